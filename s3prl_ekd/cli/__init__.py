"""The ``s3prl-ekd`` command (``python -m s3prl_ekd.cli``): one sub-command per job, dispatched by :mod:`.commands`."""

from s3prl_ekd.cli.commands import main

__all__ = ["main"]
