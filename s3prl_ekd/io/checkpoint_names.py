"""s3prl's names of numbered pretraining checkpoints: ``states-<step>.ckpt``."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import List, Optional, Tuple

PREFIX = "states-"  # s3prl's Runner: states-<global step>.ckpt


def checkpoint_name(step: int, prefix: str = PREFIX) -> str:
    """``<prefix><step>.ckpt``."""
    return f"{prefix}{int(step)}.ckpt"


def checkpoint_step(name: str, prefix: str = PREFIX) -> Optional[int]:
    """The step of a file named ``<prefix><step>.ckpt``, or None for any other name."""
    m = re.fullmatch(re.escape(prefix) + r"(\d+)\.ckpt", os.path.basename(name))
    return int(m.group(1)) if m else None


def numbered_checkpoints(folder: os.PathLike | str, prefix: str = PREFIX) -> List[Tuple[int, Path]]:
    """``(step, path)`` of every ``<prefix><step>.ckpt`` in ``folder``, oldest first."""
    folder = Path(folder)
    found = []
    if folder.is_dir():
        for p in folder.iterdir():
            step = checkpoint_step(p.name, prefix)
            if step is not None and p.is_file():
                found.append((step, p))
    return sorted(found)
