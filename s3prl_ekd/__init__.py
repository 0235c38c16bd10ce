"""s3prl-ekd: ensemble knowledge distillation of self-supervised speech models, for s3prl."""

from __future__ import annotations

__version__ = "0.1.0"


def register() -> None:
    """Make our upstream entries known to s3prl (``s3prl.hub``) without editing its files.

    Also applies :func:`s3prl_ekd.s3prl_compat.apply` (every lasting change we make to s3prl's
    behaviour, listed there).
    """
    from s3prl_ekd import s3prl_compat

    with s3prl_compat.quiet_s3prl_import():
        import s3prl.hub

    from s3prl_ekd.upstream.ekd_student.hubconf import ENTRIES

    s3prl_compat.apply()

    for name, fn in ENTRIES.items():
        setattr(s3prl.hub, name, fn)
