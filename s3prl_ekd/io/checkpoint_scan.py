"""A checkpoint's claims checked against its bytes before ``torch.load`` allocates anything.

``torch.load`` trusts a file: a tensor record shorter than the tensor it claims is read past its
end (garbage weights, or a crash), zero strides let a few bytes stand for a huge tensor, and a
compressed zip record may expand far beyond the file. :func:`scan_checkpoint` reads the pickle
with torch's own restricted unpickler onto the ``meta`` device (sizes only, no data) and refuses:

* a record (zip) or the data section (legacy format) shorter than the storages it claims;
* a tensor with more elements than its storage holds (zero or overlapping strides);
* a zip whose records expand to more than :data:`MAX_EXPANSION` times the file.
"""

from __future__ import annotations

import io
import os
import zipfile
from typing import Any, Dict, Sequence

import torch
from torch import _weights_only_unpickler

from s3prl_ekd.io.safe_globals import SAFE_GLOBALS, allowed_globals

MAX_EXPANSION = 4  # torch writes records uncompressed: a little slack for odd writers
SLACK_BYTES = 1 << 20


class CheckpointClaimError(ValueError):
    """The file claims more data than it holds (the message says what)."""


def scan_checkpoint(path: os.PathLike | str, extra_globals: Sequence[Any] = ()) -> None:
    """Raise :class:`CheckpointClaimError` when ``path``'s tensors claim more than its bytes hold.

    Files that are no checkpoint at all (or hold non-plain objects) are left to ``torch.load``,
    whose errors say more; only the size claims are judged here. ``extra_globals``: classes (or
    ``(class, name)`` pairs) the caller's own load allows besides plain data.
    """
    size = os.path.getsize(path)
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            _scan_zip(z, size, extra_globals)
    else:
        with open(path, "rb") as f:
            _scan_legacy(f, size, extra_globals)


def _scan_zip(z: zipfile.ZipFile, size: int, extra_globals: Sequence[Any]) -> None:
    infos = z.infolist()
    total = sum(i.file_size for i in infos)
    if total > MAX_EXPANSION * size + SLACK_BYTES:
        raise CheckpointClaimError(
            f"its zip records expand to {total:,} bytes from a {size:,}-byte file (torch writes them "
            "uncompressed): refused before reading"
        )
    pkl = [i for i in infos if i.filename.endswith("/data.pkl") or i.filename == "data.pkl"]
    if len(pkl) != 1:
        return
    prefix = pkl[0].filename[: -len("data.pkl")]
    records = {i.filename[len(prefix) + len("data/"):]: i.file_size for i in infos if i.filename.startswith(prefix + "data/")}
    claims: Dict[str, int] = {}

    def persistent_load(pid: Any) -> Any:
        nbytes = _claimed_bytes(pid)
        key = str(pid[2])
        claims[key] = max(claims.get(key, 0), nbytes)
        held = records.get(key)
        if held is None or held < nbytes:
            raise CheckpointClaimError(
                f"tensor record data/{key} holds {held or 0:,} bytes but the checkpoint claims {nbytes:,} for it"
            )
        return _meta_storage(pid, nbytes)

    _dry_run(io.BytesIO(z.read(pkl[0])), persistent_load, extra_globals)


def _scan_legacy(f: io.BufferedReader, size: int, extra_globals: Sequence[Any]) -> None:
    claims: Dict[str, int] = {}

    def persistent_load(pid: Any) -> Any:
        if not isinstance(pid, tuple) or not pid or pid[0] != "storage":
            return None
        nbytes = _claimed_bytes(pid)
        claims[str(pid[2])] = nbytes
        if sum(claims.values()) > size:
            raise CheckpointClaimError(
                f"its tensors claim {sum(claims.values()):,} bytes or more but the file holds {size:,}"
            )
        return _meta_storage(pid, nbytes)

    try:
        for _ in range(3):  # magic number, protocol version, system info
            _weights_only_unpickler.load(f, encoding="bytes")
    except Exception:
        return  # not torch's legacy format: torch.load says what it is
    _dry_run(f, persistent_load, extra_globals)


def _claimed_bytes(pid: Any) -> int:
    if not isinstance(pid, tuple) or len(pid) < 5 or pid[0] != "storage":
        raise CheckpointClaimError(f"unknown persistent record {str(pid)[:80]}")
    storage_type, numel = pid[1], pid[4]
    dtype = torch.uint8 if storage_type is torch.UntypedStorage else getattr(storage_type, "dtype", None)
    if not isinstance(dtype, torch.dtype) or type(numel) is not int or numel < 0:
        raise CheckpointClaimError(f"a tensor record of unknown type or size ({str(pid)[:80]})")
    return numel * torch._utils._element_size(dtype)


def _meta_storage(pid: Any, nbytes: int) -> torch.storage.TypedStorage:
    dtype = torch.uint8 if pid[1] is torch.UntypedStorage else pid[1].dtype
    untyped = torch.UntypedStorage(nbytes, device="meta")
    return torch.storage.TypedStorage(wrap_storage=untyped, dtype=dtype, _internal=True)


def _dry_run(f: Any, persistent_load, extra_globals: Sequence[Any]) -> None:
    unpickler = _weights_only_unpickler.Unpickler(f, encoding="utf-8")
    unpickler.persistent_load = persistent_load
    try:
        with allowed_globals(_plain_globals() + list(extra_globals)):
            obj = unpickler.load()
    except CheckpointClaimError:
        raise
    except Exception:
        return  # not plain data, not a pickle, a view out of its storage: torch.load's own error says more
    _check_views(obj, 0)


def _plain_globals() -> list:
    return list(SAFE_GLOBALS)


def _check_views(obj: Any, depth: int) -> None:
    """Every tensor holds at most as many elements as its storage (no zero/overlapping strides)."""
    if depth > 64:
        return
    if isinstance(obj, torch.Tensor):
        held = obj.untyped_storage().nbytes() // max(1, obj.element_size())
        if obj.numel() > max(held, 1):
            raise CheckpointClaimError(
                f"a tensor of shape {tuple(obj.shape)} ({obj.numel():,} elements) is a view of a storage of "
                f"{held:,} (zero or overlapping strides): a few bytes cannot stand for a real weight"
            )
    elif isinstance(obj, dict):
        for v in obj.values():
            _check_views(v, depth + 1)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            _check_views(v, depth + 1)
    elif hasattr(obj, "__dict__") and type(obj).__module__ == "argparse":
        _check_views(vars(obj), depth + 1)
