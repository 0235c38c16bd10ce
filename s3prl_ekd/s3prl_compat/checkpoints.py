"""s3prl's runner checkpoints (they hold an ``argparse.Namespace``) readable weights-only."""

from __future__ import annotations

import argparse


def allow_runner_checkpoints() -> None:
    """Let ``torch.load(weights_only=True)`` read s3prl runner checkpoints (their ``Args``)."""
    import torch

    torch.serialization.add_safe_globals([argparse.Namespace])
