"""The one reader of config sections: a dataclass filled from a YAML mapping, every value checked.

Each config block is a dataclass: its fields are the keys, their defaults the only defaults, their
type hints the types, and a field's ``metadata`` (see :func:`setting`) its range. :func:`from_mapping`
reads a mapping into such a class:

* an unknown key is an error naming the key (as ``section.key``) and the keys the section allows;
* a value of the wrong type is an error naming the key: ``int`` (no bools, no floats), ``float``
  (finite; ints accepted), ``bool`` (YAML's ``true``/``false`` only, never the string
  ``"false"``), ``str``, ``Literal[...]`` choices, ``Optional[...]``, nested dataclasses (an empty
  section, ``None``, gives the defaults), ``Tuple[X, ...]`` / ``List[X]`` / ``Dict[str, X]``
  of those, and ``Any`` (left to the class's own ``__post_init__``);
* a value out of the field's declared range is an error naming the key and the range;
* a check across fields lives in the class's ``__post_init__`` and raises :class:`ConfigValueError`;
* a class may offer ``prepare_mapping(dict) -> dict`` for YAML spellings it maps to its own
  (``autocast: false`` for ``"off"``), applied before the keys are read.

Where s3prl or a checkpoint file needs a plain dict, :func:`to_dict` converts at that boundary.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Dict, Mapping, Optional, Type, TypeVar

from s3prl_ekd.config.values import ConfigValueError, boolean, check_known_keys, choice, integer, number

T = TypeVar("T")
_NO_DEFAULT = dataclasses.MISSING


def setting(
    default: Any = _NO_DEFAULT,
    *,
    factory: Any = _NO_DEFAULT,
    low: Optional[float] = None,
    high: Optional[float] = None,
    low_open: bool = False,
    nonempty: bool = False,
) -> Any:
    """A dataclass field with its range: ``low``/``high`` bound numbers (``low_open``: ``> low``),
    ``nonempty`` refuses an empty list; the bounds also apply to each number of a list."""
    meta = {"low": low, "high": high, "low_open": low_open, "nonempty": nonempty}
    if factory is not _NO_DEFAULT:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _key(where: str, name: object) -> str:
    return f"{where}.{name}" if where else str(name)


def _scalar(tp: Any, value: Any, key: str, meta: Mapping[str, Any]) -> Any:
    low, high = meta.get("low"), meta.get("high")
    if tp is bool:
        return boolean(value, key)
    if tp is int:
        return integer(value, key, None if low is None else int(low), None if high is None else int(high))
    if tp is float:
        return number(value, key, low, float("inf") if high is None else high, meta.get("low_open", False))
    if tp is str:
        if not isinstance(value, str):
            raise ConfigValueError(f"`{key}` must be a string, got {value!r}")
        return value
    raise TypeError(f"config field `{key}`: the reader does not know the type {tp!r}")


def _shape(tp_or_value: Any) -> str:
    """"list", "mapping" or "scalar": of a type hint, or of a value."""
    origin = typing.get_origin(tp_or_value)
    if origin in (tuple, list) or isinstance(tp_or_value, (list, tuple)):
        return "list"
    if origin in (dict, Mapping, typing.get_origin(Mapping[str, int])) or isinstance(tp_or_value, Mapping):
        return "mapping"
    if isinstance(tp_or_value, type) and dataclasses.is_dataclass(tp_or_value):
        return "mapping"
    return "scalar"


def _describe(tp: Any) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (tuple, list):
        return "a list"
    if origin in (dict, Mapping) or dataclasses.is_dataclass(tp):
        return "a mapping"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(tp, repr(tp))


def _value(tp: Any, value: Any, key: str, meta: Mapping[str, Any]) -> Any:
    """``value`` checked against the type hint ``tp``; errors name ``key``."""
    if tp is Any:
        return value
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Union or origin is types.UnionType:  # Optional[X], Union[X, Y], X | None
        if value is None:
            if type(None) in args:
                return None
            raise ConfigValueError(f"`{key}` must be set, got null")
        options = [a for a in args if a is not type(None)]
        fitting = [o for o in options if _shape(o) == _shape(value)]  # a list goes to the list option
        if len(options) == 1 or len(fitting) == 1:
            return _value((fitting or options)[0], value, key, meta)
        for option in options:
            try:
                return _value(option, value, key, meta)
            except ConfigValueError:
                continue
        wanted = " or ".join(_describe(o) for o in options)
        raise ConfigValueError(f"`{key}` must be {wanted}, got {value!r}")
    if origin is typing.Literal:
        return choice(value, key, args)
    if dataclasses.is_dataclass(tp):
        return _read(tp, {} if value is None else value, key)
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigValueError(f"`{key}` must be a list, got {value!r}")
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            if len(value) != len(args):
                raise ConfigValueError(f"`{key}` must be a list of {len(args)} values, got {value!r}")
            return tuple(_value(a, v, f"{key}[{i}]", meta) for i, (a, v) in enumerate(zip(args, value)))
        if meta.get("nonempty") and not value:
            raise ConfigValueError(f"`{key}` must be a non-empty list, got {value!r}")
        items = [_value(args[0] if args else Any, v, f"{key}[{i}]", meta) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin in (dict, Mapping, typing.get_origin(Mapping[str, int])):
        if not isinstance(value, Mapping):
            raise ConfigValueError(f"`{key}` must be a mapping, got {value!r}")
        key_type, value_type = args if args else (Any, Any)
        return {_value(key_type, k, key, {}): _value(value_type, v, _key(key, k), meta) for k, v in value.items()}
    return _scalar(tp, value, key, meta)


def _read(cls: Type[T], mapping: Any, where: str) -> T:
    if not isinstance(mapping, Mapping):
        place = f"`{where}`" if where else "the config"
        raise ConfigValueError(f"{place} must be a mapping of keys, got {mapping!r}")
    prepare = getattr(cls, "prepare_mapping", None)
    if prepare is not None:  # spellings YAML allows that the class maps to its own (e.g. `false` for "off")
        mapping = prepare(dict(mapping))
    fields = [f for f in dataclasses.fields(cls) if f.init]
    check_known_keys(mapping, [f.name for f in fields], error=ConfigValueError, prefix=where)
    hints = typing.get_type_hints(cls)
    values: Dict[str, Any] = {}
    for f in fields:
        if f.name not in mapping:
            if f.default is _NO_DEFAULT and f.default_factory is _NO_DEFAULT:
                raise ConfigValueError(f"key `{_key(where, f.name)}` is missing: it has no default")
            continue
        values[f.name] = _value(hints[f.name], mapping[f.name], _key(where, f.name), f.metadata)
    return cls(**values)


def from_mapping(cls: Type[T], mapping: Any, where: str = "", error: Type[Exception] = ConfigValueError) -> T:
    """``cls`` (a dataclass) read from ``mapping``; ``where`` is the section's dotted path.

    Missing keys take the dataclass defaults; unknown keys, wrong types and values out of range
    raise ``error`` naming the key as ``where.key``.
    """
    try:
        return _read(cls, mapping, where)
    except ConfigValueError as e:
        if error is ConfigValueError:
            raise
        raise error(str(e)) from None


def to_dict(config: Any) -> Dict[str, Any]:
    """A config dataclass as plain data (tuples as lists): what YAML files and checkpoints store."""
    def plain(value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return plain(dataclasses.asdict(config))
