"""Read raw fairseq HuBERT checkpoints without fairseq, and convert them to s3prl's format.

A checkpoint written by fairseq's trainer is a pickle that, besides tensors, names a few classes:
``fairseq.data.dictionary.Dictionary`` (the label dictionaries), ``argparse.Namespace`` (``args``
of older runs) and, in some versions, omegaconf's ``DictConfig``/``ListConfig`` and their nodes
and metadata (which in turn name fairseq's config dataclasses, ``typing.Any``, enums...).
Importing those would need fairseq and would run their code. We load with torch's
``weights_only`` unpickler instead, standing each such class in by an inert record of what the
pickle gives it, then turn the records into plain data (a Dictionary into its ``symbols``, a
DictConfig into a dict). Classes of other modules are refused.

The result is written in s3prl's converted HuBERT format (``task_cfg``, ``model_cfg``,
``model_weight``, ``dictionaries_symbols``, as ``s3prl.upstream.hubert.convert`` writes it), which
``s3prl.hub.hubert_local`` loads.
"""

from __future__ import annotations

import argparse
import os
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch

from s3prl_ekd.io.atomic import atomic_save
from s3prl_ekd.io.checkpoint import CheckpointError, check_claims, explain_load_error, raised_in_torch_load
from s3prl_ekd.io.safe_globals import allowed_globals
from s3prl_ekd.teachers.target_cache import file_sha256

# Modules whose classes may appear in a fairseq checkpoint and are stood in by inert records.
STUB_MODULES = ("fairseq", "omegaconf", "typing", "enum", "collections", "builtins", "numpy", "pathlib", "hydra")
# Classes read as themselves: plain data with no code of their own.
PLAIN_CLASSES = {"argparse.Namespace": argparse.Namespace}
CONVERTED_KEYS = ("task_cfg", "model_cfg", "model_weight", "dictionaries_symbols")
DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "s3prl_ekd" / "converted"


class _Record:
    """An inert stand-in for a class from a checkpoint: it only remembers what the pickle gave it."""

    path = "?"

    def __new__(cls, *args, **kwargs):
        obj = object.__new__(cls)
        obj.args, obj.state, obj.items = args, None, {}
        return obj

    def __init__(self, *args, **kwargs):  # called by REDUCE (e.g. an enum member): args already kept
        pass

    def __setstate__(self, state):
        self.state = state

    def __setitem__(self, key, value):  # dict subclasses (defaultdict) are filled by SETITEM
        self.items[key] = value

    def __repr__(self) -> str:
        return f"<{self.path}>"


def _record_class(full_path: str) -> type:
    return type(full_path.rsplit(".", 1)[-1], (_Record,), {"path": full_path})


def _stub_allowed(full_path: str) -> bool:
    return full_path.split(".", 1)[0] in STUB_MODULES or "." not in full_path  # builtins come unprefixed


def load_fairseq_checkpoint(path: os.PathLike | str) -> Dict[str, Any]:
    """The checkpoint as plain data (dicts, lists, tensors, str...), read without fairseq."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"fairseq checkpoint {path} does not exist: check the path given with `ckpt` / -k")
    records: Dict[str, type] = {}
    is_zip = zipfile.is_zipfile(path)
    if is_zip:
        for name in torch.serialization.get_unsafe_globals_in_checkpoint(str(path)):
            _add_record(records, name, path)
        check_claims(path, [(c, n) for n, c in records.items()])  # before anything is allocated
    raw = None
    for _ in range(64):  # legacy (non-zip) files: learn the classes from the refusals
        try:
            with allowed_globals([(c, n) for n, c in records.items()]):
                # mmap: tensors are read only when used (zip files)
                raw = torch.load(path, map_location="cpu", weights_only=True, mmap=is_zip)
            break
        except pickle.UnpicklingError as e:
            m = re.search(r"GLOBAL (\S+) was not an allowed global", str(e))
            if not m or m.group(1) in records:
                # torch's own text advises weights_only=False: name the refused class instead
                raise CheckpointError(f"{explain_load_error(path, e, always=True)} (read as a fairseq checkpoint)") from None
            name = m.group(1) if "." in m.group(1) else f"builtins.{m.group(1)}"
            _add_record(records, name, path)
        except Exception as e:  # noqa: BLE001 - only failures inside torch.load are explained
            if not isinstance(e, (RuntimeError, EOFError, zipfile.BadZipFile, OSError)) and not raised_in_torch_load(e):
                raise
            raise CheckpointError(
                f"fairseq checkpoint {path} cannot be read ({type(e).__name__}: {str(e).splitlines()[0]}): "
                "it is truncated or damaged"
            ) from None
    if not isinstance(raw, dict):
        raise CheckpointError(f"{path} is not a fairseq checkpoint (it holds a {type(raw).__name__}, not a dict)")
    return to_plain(raw)


def _add_record(records: Dict[str, type], name: str, path: Path) -> None:
    if name in PLAIN_CLASSES:
        records[name] = PLAIN_CLASSES[name]
        return
    if not _stub_allowed(name):
        raise CheckpointError(
            f"{path} names the class {name}, which a fairseq checkpoint does not hold; it was refused "
            "unread (only fairseq / omegaconf / argparse data are read). Only load checkpoints you trust"
        )
    records[name] = _record_class(name)


def to_plain(obj: Any) -> Any:
    """Turn records of fairseq / omegaconf / argparse objects into plain Python data."""
    if isinstance(obj, torch.Tensor):
        return obj
    if isinstance(obj, dict):  # also OrderedDict (state dicts keep their type)
        return type(obj)((k, to_plain(v)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_plain(v) for v in obj)
    if isinstance(obj, argparse.Namespace):
        return {k: to_plain(v) for k, v in vars(obj).items()}
    if isinstance(obj, _Record):
        return _record_to_plain(obj)
    if isinstance(obj, type) and issubclass(obj, _Record):
        return None  # a bare class reference (typing.Any, a config dataclass as metadata)
    if type(obj).__name__ == "Dictionary" and isinstance(getattr(obj, "symbols", None), list):
        return list(obj.symbols)  # a real fairseq Dictionary, where the caller allowlisted fairseq's class
    return obj


def _record_to_plain(rec: _Record) -> Any:
    name = rec.path
    state = rec.state
    if name.endswith("dictionary.Dictionary"):
        return list(to_plain(state.get("symbols", []))) if isinstance(state, dict) else None
    if name.startswith("omegaconf."):
        content = state.get("_content") if isinstance(state, dict) else None
        if name.endswith("DictConfig"):
            return {k: to_plain(v) for k, v in (content or {}).items()} if isinstance(content, dict) else content
        if name.endswith("ListConfig"):
            return [to_plain(v) for v in content] if isinstance(content, list) else content
        if isinstance(state, dict) and "_val" in state:  # a value node
            return to_plain(state["_val"])
        return None  # metadata
    if rec.items:  # a dict subclass
        return {k: to_plain(v) for k, v in rec.items.items()}
    if len(rec.args) == 1 and state is None:  # an enum member: Enum(value)
        return to_plain(rec.args[0])
    if isinstance(state, dict):  # a plain object: its attributes
        return {k: to_plain(v) for k, v in state.items()}
    return None


def is_fairseq_checkpoint(path: os.PathLike | str) -> bool:
    """True for a checkpoint as fairseq's trainer writes it (``model`` + ``cfg``/``args``), not s3prl's."""
    try:
        keys = set(load_fairseq_checkpoint(path))
    except CheckpointError:
        return False
    return "model" in keys and ("cfg" in keys or "args" in keys) and "model_weight" not in keys


def fairseq_to_s3prl(state: Dict[str, Any], path: os.PathLike | str = "<memory>") -> Dict[str, Any]:
    """A plain fairseq HuBERT checkpoint dict in s3prl's converted format."""
    cfg = state.get("cfg")
    if isinstance(cfg, dict) and isinstance(cfg.get("model"), dict) and cfg.get("task") is not None:
        model_cfg, task_cfg = dict(cfg["model"]), dict(cfg["task"])
    elif isinstance(state.get("args"), dict):  # older runs: one argparse Namespace for everything
        model_cfg, task_cfg = dict(state["args"]), dict(state["args"])
    elif isinstance(cfg, dict) and "encoder_layers" in cfg:
        raise CheckpointError(
            f"{path} has one flat `cfg` and no model / task sections: it is in WavLM's own format, "
            "not fairseq's; load it with upstream wavlm_local"
        )
    else:
        raise CheckpointError(
            f"{path} has neither `cfg` (model and task) nor `args`: it is not a fairseq training checkpoint"
        )
    arch = str(model_cfg.get("_name") or model_cfg.get("arch") or "")
    if arch and "hubert" not in arch:
        hint = " (WavLM files load with upstream wavlm_local)" if "wavlm" in arch.lower() else ""
        raise CheckpointError(f"{path} holds a fairseq {arch!r} model, not HuBERT: only HuBERT converts{hint}")
    dicts = (state.get("task_state") or {}).get("dictionaries")
    if not dicts or not all(isinstance(d, list) for d in dicts):
        raise CheckpointError(
            f"{path} has no label dictionaries (task_state.dictionaries): it is not a HuBERT pretraining "
            "checkpoint (a WavLM file? use wavlm_local)"
        )
    return {
        "task_cfg": task_cfg,
        "model_cfg": model_cfg,
        "model_weight": dict(state["model"]),
        "dictionaries_symbols": dicts,
    }


def convert_fairseq_hubert(
    path: os.PathLike | str, output: Optional[os.PathLike | str] = None, cache_dir: Optional[os.PathLike | str] = None
) -> Path:
    """Convert a fairseq HuBERT checkpoint to s3prl's format once; returns the converted file.

    The file goes to ``output`` (always written), else next to the checkpoint as
    ``<stem>.<digest>.converted.pt``, else, if that folder is read-only, to the cache dir under the
    same name. ``<digest>`` is the first 16 hex digits of the checkpoint's SHA-256: a conversion is
    reused only for the very bytes it was made from (a replaced checkpoint, whatever its
    modification time, gets its own). Written atomically.
    """
    src = Path(path)
    if output:
        candidates: List[Path] = [Path(output)]
    else:
        name = f"{src.stem}.{file_sha256(src)[:16]}.converted.pt"
        candidates = [src.with_name(name), Path(cache_dir or DEFAULT_CACHE) / name]
        for dst in candidates:
            if dst.is_file():
                return dst
    converted = fairseq_to_s3prl(load_fairseq_checkpoint(src), src)
    last_error: Optional[OSError] = None
    for dst in candidates:
        try:
            return atomic_save(converted, dst)
        except OSError as e:  # a read-only folder: try the cache
            last_error = e
    raise CheckpointError(f"cannot write the converted checkpoint of {src} to {candidates}: {last_error}")
