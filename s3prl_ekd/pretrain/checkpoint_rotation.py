"""A folder of numbered pretraining checkpoints (``states-<step>.ckpt``, s3prl's names).

s3prl's Runner deletes the oldest checkpoints *before* writing the new one, so with
``max_keep: 1`` a crash while writing leaves nothing. Here the new checkpoint is written
atomically first, and rotation then keeps the newest ``max_keep`` files plus, whenever none of
those is complete, the newest complete one: the only good checkpoint is never deleted.
"""

from __future__ import annotations

import logging
import os
import re
import zipfile
from pathlib import Path
from typing import Any, List, Optional

from s3prl_ekd.io.atomic import TEMP_PREFIX, TEMP_SUFFIX, atomic_save
from s3prl_ekd.io.checkpoint import CheckpointError, safe_load
from s3prl_ekd.io.checkpoint_names import PREFIX, checkpoint_name, numbered_checkpoints  # noqa: F401 (re-exported)

logger = logging.getLogger(__name__)

def is_complete(path: os.PathLike | str) -> bool:
    """Whether a checkpoint file was written to the end and reads back (without unpickling twice).

    ``torch.save`` writes a zip archive: a truncated file has no central directory and a damaged
    one fails its CRCs. Files of the legacy (non-zip) format are read with :func:`safe_load`.
    """
    path = Path(path)
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                return z.testzip() is None and any(n.endswith("data.pkl") for n in z.namelist())
        safe_load(path)
        return True
    except (CheckpointError, OSError, zipfile.BadZipFile, RuntimeError, EOFError):
        return False


def rotate(folder: os.PathLike | str, max_keep: Optional[int], prefix: str = PREFIX) -> List[Path]:
    """Delete all but the newest ``max_keep`` checkpoints, never the newest complete one.

    ``max_keep`` None or below 1 keeps everything. Returns the deleted paths.
    """
    if not max_keep or max_keep < 1:
        return []
    ckpts = [p for _, p in numbered_checkpoints(folder, prefix)][::-1]  # newest first
    keep = ckpts[:max_keep]
    # usually the newest file is complete and this checks one file; else walk back to a good one
    good = next((p for p in ckpts if is_complete(p)), None)
    if good is not None and good not in keep:
        logger.warning(
            f"[checkpoint] the newest {max_keep} checkpoint(s) in {folder} are damaged; "
            f"keeping {good.name}, the newest complete one"
        )
        keep.append(good)
    removed = []
    for p in ckpts:
        if p not in keep:
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def save_numbered(
    state: Any, folder: os.PathLike | str, step: int, max_keep: Optional[int] = None, prefix: str = PREFIX
) -> Path:
    """Write ``<prefix><step>.ckpt`` atomically, refuse to go on if it does not read back, then rotate."""
    folder = Path(folder)
    path = atomic_save(state, folder / checkpoint_name(step, prefix))
    if not is_complete(path):
        raise CheckpointError(
            f"checkpoint {path} did not read back after writing: is the disk full or failing? "
            "Older checkpoints were left untouched"
        )
    for stale in folder.glob(f"{TEMP_PREFIX}{prefix}*{TEMP_SUFFIX}"):  # temp files of writes cut short by a crash
        stale.unlink(missing_ok=True)
    rotate(folder, max_keep, prefix)
    return path


def recover_interrupted(folder: os.PathLike | str, prefix: str = PREFIX) -> List[Path]:
    """Finish or clean the checkpoint writes a killed run left in ``folder``; returns the recovered files.

    A temp file (``.<prefix><step>.ckpt.<random>.tmp``, see ``io.atomic.atomic_write``) that is
    complete while ``<prefix><step>.ckpt`` is missing was killed between its fsync and its rename:
    it is renamed into place, so a resume starts from it instead of redoing its steps. Every
    other such temp file is removed.
    """
    folder = Path(folder)
    pattern = re.compile(re.escape(TEMP_PREFIX + prefix) + r"(\d+)\.ckpt\.[^.]+" + re.escape(TEMP_SUFFIX))
    recovered = []
    for tmp in sorted(folder.glob(f"{TEMP_PREFIX}{prefix}*{TEMP_SUFFIX}")) if folder.is_dir() else []:
        m = pattern.fullmatch(tmp.name)
        target = folder / checkpoint_name(int(m.group(1)), prefix) if m else None
        if target is not None and not target.exists() and is_complete(tmp):
            os.replace(tmp, target)
            recovered.append(target)
            logger.warning(f"[checkpoint] {target.name} was written completely but not renamed (the run was killed): recovered it")
        else:
            tmp.unlink(missing_ok=True)
            logger.warning(f"[checkpoint] removed {tmp.name}, left by a checkpoint write cut short")
    return recovered


def latest_complete(folder: os.PathLike | str, prefix: str = PREFIX) -> Optional[Path]:
    """The newest complete checkpoint in ``folder`` (to resume from), warning about damaged newer ones."""
    for step, path in reversed(numbered_checkpoints(folder, prefix)):
        if is_complete(path):
            return path
        logger.warning(f"[checkpoint] {path} is incomplete or damaged (step {step}): resuming from an older one")
    return None
