"""Every file s3prl code reads on our behalf goes through our safe reader first.

s3prl's builders read checkpoints with ``torch.load`` (several with ``weights_only=False``: the
distiller, mockingjay, TERA and audio ALBERT builders) and ``eval()`` layer-list strings from the
configs inside them. While :func:`guarded_torch_load` is active, ``torch.load`` anywhere is our
reader: ``weights_only=True`` whatever the caller asks, plain-data classes only, every string
s3prl would ``eval()`` checked against :mod:`layer_spec`'s grammar, and a refusal when
``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` is set.

Which ``*_local`` upstreams can be made safe this way is decided per builder (read in s3prl
0.4.18): those in :data:`SAFE_LOCAL_UPSTREAMS` read their file only through ``torch.load`` and
``eval()`` only the keys :data:`layer_spec.EVAL_KEYS`; :data:`UNSAFE_LOCAL_UPSTREAMS` read files by
other means and are refused, saying why and what to use instead.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from typing import Any, Callable, Dict, Iterator, Optional

import torch

from s3prl_ekd.config.layer_spec import LayerSpecError, check_eval_strings
from s3prl_ekd.io.checkpoint import CheckpointError, check_claims, explain_load_error
from s3prl_ekd.io.safe_globals import SAFE_GLOBALS, allowed_globals

ENV_UNSAFE = "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"

# Builders that read their file only with torch.load and eval() only layer-list keys.
SAFE_LOCAL_UPSTREAMS = frozenset({
    "apc_local", "audio_albert_local", "cpc_local", "data2vec_local", "decoar2_local",
    "decoar_layers_local", "decoar_local", "distiller_local", "hubert_local", "lighthubert_local",
    "mae_ast_local", "mockingjay_local", "mos_apc_local", "mos_tera_local", "mos_wav2vec2_local",
    "multires_hubert_local", "npc_local", "tera_local", "unispeech_sat_local", "wav2vec2_local",
    "wav2vec_local", "wavlm_local",
    "ekd_student_local",  # ours: checkpoint.safe_load
})
# Builders that read files some other way (or need a second file we cannot check): refused.
UNSAFE_LOCAL_UPSTREAMS: Dict[str, str] = {
    "pase_local": "s3prl's PASE builder reads a model config and weights through the pase package's own loader",
    "baseline_local": "s3prl's baseline builder reads a feature config file, not a checkpoint",
    "espnet_hubert_local": "s3prl's ESPnet HuBERT builder reads a config and checkpoint through ESPnet's loader",
}
ALTERNATIVE = (
    "convert the model to s3prl's HuBERT format (-u hubert_local), WavLM's format (-u wavlm_local) "
    "or a raw fairseq HuBERT checkpoint (-u fairseq), or use its hub name (e.g. hubert_base) to download it"
)

_original_load = torch.load
_lock = threading.RLock()
_depth = 0
_preloaded: Dict[str, Any] = {}


def refuse_unsafe_torch_env(what: str) -> None:
    """Raise :class:`CheckpointError` when ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` switches torch's safety off."""
    if os.environ.get(ENV_UNSAFE, "0").strip().lower() not in ("", "0", "false", "off", "no"):
        raise CheckpointError(
            f"{ENV_UNSAFE} is set, so torch would unpickle {what} without restriction (a checkpoint "
            f"can run code when unpickled): unset {ENV_UNSAFE} and run again"
        )


def check_file_upstream(upstream: str) -> None:
    """Raise :class:`CheckpointError` unless ``upstream`` (a ``*_local`` / ``*_url`` / ``*_custom``
    hub name) reads its file with a builder we make safe (the ``*_local`` one of the same model)."""
    for suffix in ("_local", "_url", "_custom"):
        if upstream.endswith(suffix):
            local = upstream[: -len(suffix)] + "_local"
            break
    else:
        return
    if local in SAFE_LOCAL_UPSTREAMS:
        return
    why = UNSAFE_LOCAL_UPSTREAMS.get(local, "its s3prl builder has not been checked for how it reads files")
    raise CheckpointError(
        f"upstream {upstream!r} is refused: {why}, which s3prl-ekd cannot make safe (a file could run code "
        f"when read). Instead, {ALTERNATIVE}. Upstreams whose files are read safely: "
        f"{', '.join(sorted(SAFE_LOCAL_UPSTREAMS))}"
    )


def checked_load(f: Any, map_location: Any = "cpu", mmap: Optional[bool] = None) -> Any:
    """Our reader: ``torch.load`` with ``weights_only=True``, plain-data globals, eval()ed strings checked."""
    name = getattr(f, "name", f)
    refuse_unsafe_torch_env(str(name))
    if isinstance(f, (str, os.PathLike)) and os.path.isfile(f):
        check_claims(f)
    try:
        with allowed_globals(SAFE_GLOBALS):
            obj = _original_load(f, map_location=map_location, weights_only=True, mmap=mmap)
    except MemoryError:
        raise
    except Exception as e:
        raise explain_load_error(name, e, always=True) from None
    try:
        check_eval_strings(obj)
    except LayerSpecError as e:
        raise CheckpointError(f"checkpoint {name}: {e}; refused before s3prl reads it") from None
    return obj


def _guarded(f: Any, map_location: Any = None, pickle_module: Any = None, *, weights_only: Optional[bool] = None, **kwargs: Any) -> Any:
    caller = sys._getframe(1).f_globals.get("__name__", "")
    if caller.startswith(f"{__package__.split('.')[0]}.") and weights_only is True:
        # our own readers (safe_load, the fairseq reader, the target cache) check what they read
        # and always pass weights_only=True (tests/test_checkpoint_safety.py scans for it)
        return _original_load(f, map_location, pickle_module, weights_only=True, **kwargs)
    if isinstance(f, (str, os.PathLike)):
        key = os.path.realpath(f)
        if key in _preloaded:  # already read and checked: s3prl gets exactly what was checked
            return _preloaded.pop(key)
    return checked_load(f, map_location=map_location, mmap=kwargs.get("mmap"))


# ``sys.modules`` names s3prl's distiller and mockingjay builders set around their own torch.load
# and remove after it: restored when the guard exits, so a refusal inside them leaves none behind
BUILDER_ALIASES = ("optimizers",)


@contextlib.contextmanager
def guarded_torch_load(preloaded: Optional[Dict[str, Any]] = None) -> Iterator[None]:
    """Within: ``torch.load`` is :func:`checked_load` (nests; restored on exit).

    ``preloaded`` maps paths already read with :func:`checked_load` to what was read: the first
    ``torch.load`` of such a path returns it instead of reading the file again.
    """
    global _depth
    refuse_unsafe_torch_env("any checkpoint")
    aliases = {name: sys.modules.get(name) for name in BUILDER_ALIASES}
    with _lock:
        _depth += 1
        torch.load = _guarded
        for path, obj in (preloaded or {}).items():
            _preloaded[os.path.realpath(path)] = obj
    try:
        yield
    finally:
        with _lock:
            for path in preloaded or {}:
                _preloaded.pop(os.path.realpath(path), None)
            _depth -= 1
            if _depth == 0:
                torch.load = _original_load
        # a refused read raises inside s3prl's builder, before it removes its own alias
        for name, module in aliases.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def run_guarded(main: Callable[[], Any], name: str) -> Any:
    """``main()`` (an s3prl entry point) with every ``torch.load`` our checked reader; a refused
    file ends it with a message naming the file instead of a traceback."""
    try:
        with guarded_torch_load():
            return main()
    except CheckpointError as e:
        raise SystemExit(f"{name}: {e}") from None
