"""Reading checkpoint files safely: ``weights_only`` loads, claims checked before allocation, and
every failure turned into a :class:`CheckpointError` that names the file and what to do."""

from __future__ import annotations

import os
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any, Optional, Sequence

import torch

from s3prl_ekd.io.checkpoint_scan import CheckpointClaimError, scan_checkpoint
from s3prl_ekd.io.safe_globals import SAFE_GLOBALS, allowed_globals


class CheckpointError(RuntimeError):
    """A checkpoint file that is missing, damaged, unsafe or of another model."""


def safe_load(path: os.PathLike | str, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load`` with ``weights_only=True``; every failure becomes a :class:`CheckpointError`."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a folder, not a file: pass the .ckpt file inside it")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist: check the path given with -k / ckpt")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes): it was not written completely; use an earlier one")
    check_claims(path)
    try:
        with allowed_globals(SAFE_GLOBALS):
            return torch.load(path, map_location=map_location, weights_only=True)
    except MemoryError:
        raise
    except Exception as e:  # garbage raises anything from RuntimeError to UnicodeDecodeError
        raise explain_load_error(path, e, always=True) from None


def check_claims(path: os.PathLike | str, extra_globals: Sequence[Any] = ()) -> None:
    """Raise :class:`CheckpointError` when ``path``'s tensors claim more than its bytes hold
    (short records, zero strides, expanding zip records): before ``torch.load`` allocates."""

    try:
        scan_checkpoint(path, extra_globals)
    except CheckpointClaimError as e:
        raise CheckpointError(
            f"checkpoint {path} is not what it claims: {e}; it is damaged or crafted, refused before loading"
        ) from None
    except OSError:
        return  # unreadable: torch.load's error names it


def explain_load_error(path: os.PathLike | str, e: BaseException, always: bool = False) -> Optional[CheckpointError]:
    """The :class:`CheckpointError` for ``e`` raised while ``torch.load`` read ``path``.

    With ``always`` False (errors from someone else's loader, e.g. an s3prl hub expert), None when
    ``e`` does not look like a file that could not be read: that error is then not ours to explain.
    """
    text = str(e)
    if isinstance(e, pickle.UnpicklingError):
        found = re.search(r"GLOBAL ([\w.]+)|unrecognized function <([\w.]+)>", text)
        if found is not None:
            return CheckpointError(
                f"checkpoint {path} holds objects that are not plain data ({found.group(1) or found.group(2)}) and was refused "
                "unread (safe loading, weights_only=True): only load checkpoints you trust, converted to "
                "plain tensors and dicts"
            )
        # the restricted unpickler met bytes that are no pickle at all
        reason = f"not a torch checkpoint: {_unpickler_reason(e)}"
    elif always or isinstance(e, (EOFError, zipfile.BadZipFile)) or raised_in_torch_load(e) or any(
        m in text for m in ("PytorchStreamReader", "central directory", "magic number", "zip archive")
    ):
        reason = f"{type(e).__name__}: {text.splitlines()[0] if text else ''}"
    else:
        return None
    return CheckpointError(
        f"checkpoint {path} cannot be read ({reason}): it is truncated or damaged; "
        "use an earlier checkpoint or write it again"
    )


def raised_in_torch_load(e: BaseException) -> bool:
    """Whether ``e`` was raised inside ``torch.load`` itself (its unpickler met bytes it cannot
    read, e.g. an IndexError on a file that is no checkpoint), not in the caller's code after it."""
    tb, last = e.__traceback__, None
    while tb is not None:
        last = tb.tb_frame.f_code.co_filename
        tb = tb.tb_next
    if last is None:
        return False
    folder, name = os.path.split(last)
    return os.path.basename(folder) == "torch" and name in ("serialization.py", "_weights_only_unpickler.py")


def _unpickler_reason(e: BaseException) -> str:
    found = re.search(r"WeightsUnpickler error: ([^\n]+)", str(e))
    return found.group(1) if found else str(e).splitlines()[0]
