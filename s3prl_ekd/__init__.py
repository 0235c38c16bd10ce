"""s3prl-ekd: ensemble knowledge distillation of self-supervised speech models, for s3prl."""

from __future__ import annotations

__version__ = "0.1.0"


def register() -> None:
    """Make our upstream entries known to s3prl (``s3prl.hub``) without editing its files.

    Also applies :mod:`s3prl_ekd.compat` (s3prl's downstream harness on torch 2.8 / the wheel).
    """
    from . import compat

    with compat.quiet_s3prl_import():
        import s3prl.hub

    from .hub import ENTRIES

    compat.apply()

    for name, fn in ENTRIES.items():
        setattr(s3prl.hub, name, fn)
