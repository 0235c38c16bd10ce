"""Write a file so that a crash leaves the old file or the new one, never a partial one."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Callable

import torch


def atomic_save(obj: Any, path: os.PathLike | str) -> Path:
    """``torch.save`` to a temp file in the same folder, fsync, then rename over ``path``.

    A crash at any moment leaves either the old file or the new one, never a partial file.
    """
    return atomic_write(path, lambda f: torch.save(obj, f))


TEMP_PREFIX, TEMP_SUFFIX = ".", ".tmp"  # temp files are ".<name>.<random>.tmp" beside their target


def atomic_write(path: os.PathLike | str, write: Callable[[BinaryIO], Any], durable: bool = True) -> Path:
    """``write(f)`` into a temp file beside ``path``, fsync, then rename it over ``path``.

    The file gets the mode ``open`` would give it (0666 less the umask), and a ``path`` that is a
    symlink is replaced by the new file, never written through (its target is left alone).
    ``durable=False`` skips the fsyncs, for files that can be made again (caches): still atomic.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600 whatever the umask
        with os.fdopen(fd, "wb") as f:
            write(f)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
        if durable:
            _fsync_dir(path.parent)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0o022)  # the only way to read it is to set it: put it back at once
    os.umask(mask)
    return mask


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_text(path: os.PathLike | str, text: str) -> Path:
    """:func:`atomic_write` of ``text`` as UTF-8."""
    return atomic_write(path, lambda f: f.write(text.encode("utf-8")))
