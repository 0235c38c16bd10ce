"""Layer-list config strings, which s3prl ``eval()``s, read by a strict and bounded grammar.

s3prl's model builders turn strings such as ``conv_feature_layers`` into layer lists with
Python's ``eval()``: a checkpoint or config holding an expression there would run it. Every such
string is checked here first. The grammar is the one these strings use::

    expr  := term ("+" term)*
    term  := list | list "*" INT | INT "*" list | "(" expr ")"
    list  := "[" (item ("," item)*)? ","? "]"
    item  := INT | "(" INT ("," INT)* ","? ")"

Integers are non-negative and at most :data:`MAX_VALUE`; the list a string describes is at most
:data:`MAX_ITEMS` long, which is checked *before* a repetition is expanded (``[(1, 1, 1)] * 10**9``
is refused without building anything).
"""

from __future__ import annotations

import ast
from typing import Any, Iterator, List, Mapping, Tuple

# The config keys s3prl 0.4.18 eval()s (wav2vec / wav2vec 2.0 / HuBERT / WavLM / data2vec /
# multi-resolution HuBERT / distiller builders).
EVAL_KEYS = (
    "conv_feature_layers",
    "extractor_conv_feature_layers",
    "conv_aggregator_layers",
    "override_encoder_layers",
)
# eval()ed by s3prl's wav2vec 2.0 transformer layer when a string: only None is ever valid there
NONE_ONLY_KEYS = ("xformers_att_config",)
MAX_ITEMS = 256  # HuBERT's extractor has 7 conv layers, wav2vec's aggregator 12
MAX_VALUE = 1 << 16  # channels, kernel sizes and strides
MAX_TUPLE = 8


class LayerSpecError(ValueError):
    """A layer-list string outside the grammar (or too large)."""


def parse_layer_spec(text: Any, key: str = "conv_feature_layers") -> List[Any]:
    """The list ``text`` describes (ints or tuples of ints); :class:`LayerSpecError` naming ``key`` otherwise."""
    if not isinstance(text, str):
        raise LayerSpecError(f"`{key}` must be a string like \"[(512,10,5)] + [(512,3,2)] * 4\", got {type(text).__name__}")
    if len(text) > 4096:
        raise LayerSpecError(f"`{key}` is {len(text)} characters long: a layer list is a short string")
    try:
        tree = ast.parse(text.strip(), mode="eval").body
        _size(tree)  # bounds the result before anything is built
        return _build(tree)
    except (SyntaxError, RecursionError, LayerSpecError) as e:
        raise LayerSpecError(
            f"`{key}` = {text[:120]!r} is not a layer list (a list of integer tuples joined by + and "
            f"repeated by *, e.g. \"[(512,10,5)] + [(512,3,2)] * 4\"): {getattr(e, 'msg', None) or e}"
        ) from None


def _int(node: ast.AST) -> int:
    if isinstance(node, ast.Constant) and type(node.value) is int and 0 <= node.value <= MAX_VALUE:
        return node.value
    raise LayerSpecError(f"{ast.unparse(node)[:40]!r} is not an integer in 0..{MAX_VALUE}")


def _item(node: ast.AST) -> Any:
    if isinstance(node, ast.Tuple):
        if not 1 <= len(node.elts) <= MAX_TUPLE:
            raise LayerSpecError(f"a layer tuple holds 1 to {MAX_TUPLE} integers, got {len(node.elts)}")
        return tuple(_int(e) for e in node.elts)
    return _int(node)


def _size(node: ast.AST) -> int:
    """Length of the list ``node`` builds, checked against MAX_ITEMS without building it."""
    if isinstance(node, ast.List):
        n = len(node.elts)
    elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        n = _size(node.left) + _size(node.right)
    elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult):
        if isinstance(node.right, ast.Constant):
            n = _size(node.left) * _int(node.right)
        else:
            n = _int(node.left) * _size(node.right)
    else:
        raise LayerSpecError(f"unsupported expression {ast.unparse(node)[:40]!r}")
    if n > MAX_ITEMS:
        raise LayerSpecError(f"it describes {n} layers; at most {MAX_ITEMS} are allowed")
    return n


def _build(node: ast.AST) -> List[Any]:
    if isinstance(node, ast.List):
        return [_item(e) for e in node.elts]
    assert isinstance(node, ast.BinOp)  # _size admitted only lists, + and *
    if isinstance(node.op, ast.Add):
        return _build(node.left) + _build(node.right)
    if isinstance(node.right, ast.Constant):
        return _build(node.left) * _int(node.right)
    return _build(node.right) * _int(node.left)


def eval_strings(obj: Any, depth: int = 0, where: str = "") -> Iterator[Tuple[str, Any]]:
    """(dotted key, value) of every value under an :data:`EVAL_KEYS` / :data:`NONE_ONLY_KEYS` key in
    nested mappings, namespaces and lists (the configs inside a checkpoint)."""
    if depth > 8:
        return
    if hasattr(obj, "__dict__") and not isinstance(obj, type) and type(obj).__module__ == "argparse":
        obj = vars(obj)
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            path = f"{where}.{k}" if where else str(k)
            if k in EVAL_KEYS or k in NONE_ONLY_KEYS:
                yield path, v
            elif isinstance(v, (Mapping, list, tuple)) or type(v).__module__ == "argparse":
                yield from eval_strings(v, depth + 1, path)
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj[:64]):
            yield from eval_strings(v, depth + 1, f"{where}[{i}]")


def check_eval_strings(obj: Any) -> None:
    """Raise :class:`LayerSpecError` naming the key when a string s3prl would ``eval()`` is outside the grammar."""
    for path, value in eval_strings(obj):
        key = path.rsplit(".", 1)[-1]
        if key in NONE_ONLY_KEYS:
            if value is not None:
                raise LayerSpecError(f"`{path}` must be empty (None), got {str(value)[:80]!r}: s3prl would eval() it")
        elif isinstance(value, str):
            parse_layer_spec(value, path)
        elif value is not None and not isinstance(value, (list, tuple)):
            raise LayerSpecError(f"`{path}` must be a layer-list string, got {type(value).__name__}")
