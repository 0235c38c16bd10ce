"""The classes ``torch.load(weights_only=True)`` may meet besides tensors, allowed for one block."""

from __future__ import annotations

import argparse
import contextlib
from typing import Iterator, Sequence

import torch

# Plain-data classes a pretraining checkpoint may hold besides tensors (s3prl's Runner saves
# its argparse Namespace under "Args"). Nothing that can run code is ever allowed.
SAFE_GLOBALS = [argparse.Namespace]


@contextlib.contextmanager
def allowed_globals(classes: Sequence[type]) -> Iterator[None]:
    """Allow ``classes`` for ``torch.load(weights_only=True)`` inside the block. Unlike
    ``torch.serialization.safe_globals``, whose exit removes its classes even when they were
    allowed before (so one load in the process undid :func:`s3prl_ekd.s3prl_compat.apply`), this
    removes only what it added."""
    added = [c for c in classes if c not in torch.serialization.get_safe_globals()]
    torch.serialization.add_safe_globals(added)
    try:
        yield
    finally:
        kept = [g for g in torch.serialization.get_safe_globals() if g not in added]
        torch.serialization.clear_safe_globals()
        torch.serialization.add_safe_globals(kept)
