"""s3prl's ``run_pretrain.py`` and its Runner run from anywhere with ``-u ekd``: module aliases,
stand-ins for ``os`` / ``torch`` in its modules, our optimizer and scheduler; see the package docstring."""

from __future__ import annotations

import contextlib
import os
import sys
import types
from typing import Iterator, List

import torch

EXPERT_NAME = "ekd"
# top-level names s3prl's run_pretrain.py and pretrain/runner.py import, as if run inside s3prl/
GENERIC_ALIASES = ("optimizers", "schedulers", "utility", "utility.helper", "pretrain", "pretrain.runner")


def register_optimizers() -> None:
    """Add ``EKDAdamW`` and ``EKDLinearWarmup`` to s3prl's optimizer and scheduler name spaces."""
    from s3prl import optimizers, schedulers

    from s3prl_ekd.pretrain.optim import get_EKDAdamW, get_EKDLinearWarmup

    optimizers.get_EKDAdamW = get_EKDAdamW
    schedulers.get_EKDLinearWarmup = get_EKDLinearWarmup


@contextlib.contextmanager
def module_aliases() -> Iterator[None]:
    """s3prl's top-level imports and ``pretrain.ekd.pretrain_expert`` resolvable in the block; the
    aliases it added removed after (names already in ``sys.modules`` are left as they were)."""
    import importlib

    from s3prl_ekd.pretrain import ekd as ekd_pretrain
    from s3prl_ekd.pretrain.ekd import pretrain_expert

    ours = {f"pretrain.{EXPERT_NAME}": ekd_pretrain, f"pretrain.{EXPERT_NAME}.pretrain_expert": pretrain_expert}
    targets, added = {}, []
    missing = object()
    replaced = {}
    try:
        for name in GENERIC_ALIASES:  # in order: s3prl.pretrain.runner imports `optimizers` itself
            targets[name] = importlib.import_module(f"s3prl.{name}")
            if name not in sys.modules:
                sys.modules[name] = targets[name]
                added.append(name)
        replaced = {name: sys.modules.get(name, missing) for name in ours}
        sys.modules.update(ours)
        yield
    finally:
        for name, old in replaced.items():
            if old is missing:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = old
        for name in added:
            if sys.modules.get(name) is targets[name]:
                del sys.modules[name]


class _OsWithEkd(types.ModuleType):
    """``os`` as s3prl's run_pretrain sees it: ``listdir('pretrain/')`` names our expert."""

    def __getattr__(self, name):
        return getattr(os, name)

    @staticmethod
    def listdir(path="."):
        if os.path.normpath(str(path)) == "pretrain":
            return [EXPERT_NAME]
        return os.listdir(path)


class _RunnerCheckpointWrites:
    """``torch`` and ``os`` as s3prl's Runner module sees them: checkpoints written atomically, and
    the old ones its ``max_keep`` removes *before* a save deleted only after the new one is complete.

    s3prl's Runner deletes first and writes in place: a crash in between (``max_keep: 1``) or during
    the write would leave no loadable checkpoint.
    """

    pending: List[str] = []

    class Torch(types.ModuleType):
        def __getattr__(self, name):
            return getattr(torch, name)

        @staticmethod
        def save(obj, path, *args, **kwargs):
            from s3prl_ekd.io.atomic import atomic_save
            from s3prl_ekd.io.checkpoint_names import checkpoint_step
            from s3prl_ekd.pretrain.checkpoint_rotation import save_numbered

            folder, name = os.path.split(str(path))
            step = checkpoint_step(name)
            if step is not None:
                save_numbered(obj, folder, step)  # atomic, read back
            else:
                atomic_save(obj, path)
            while _RunnerCheckpointWrites.pending:
                old = _RunnerCheckpointWrites.pending.pop()
                if os.path.abspath(old) != os.path.abspath(str(path)) and os.path.exists(old):
                    os.remove(old)

    class Os(types.ModuleType):
        def __getattr__(self, name):
            return getattr(os, name)

        @staticmethod
        def remove(path):
            from s3prl_ekd.io.checkpoint_names import PREFIX

            if os.path.basename(str(path)).startswith(PREFIX):
                _RunnerCheckpointWrites.pending.append(str(path))
            else:
                os.remove(path)


def checked_runner_class(runner_cls):
    """s3prl's Runner, checking the runner config for unknown keys first and noting its expdir."""
    if getattr(runner_cls, "_ekd_checked", False):
        return runner_cls
    from s3prl_ekd.pretrain.ekd.config import check_runner_config

    class CheckedRunner(runner_cls):
        """s3prl's Runner, after checking the runner config (it ignores unknown keys)."""

        _ekd_checked = True

        last_expdir = None

        def __init__(self, args, config):
            check_runner_config(config, getattr(args, "config", None) or "runner config")
            CheckedRunner.last_expdir = args.expdir
            super().__init__(args, config)

    return CheckedRunner


@contextlib.contextmanager
def patched() -> Iterator[types.ModuleType]:
    """s3prl's ``run_pretrain`` module, with ``-u ekd`` known and its Runner's checkpoint writes
    made safe, for the block; the aliases and module attributes set here restored after
    (``copyfile`` too, which the DDP launcher silences on ranks > 0)."""
    from s3prl_ekd import register

    register()
    register_optimizers()
    with module_aliases():
        import s3prl.pretrain.runner as runner_module
        from s3prl import run_pretrain

        saved = [(module, name, getattr(module, name)) for module, name in
                 ((run_pretrain, "os"), (run_pretrain, "Runner"), (run_pretrain, "copyfile"),
                  (runner_module, "torch"), (runner_module, "os"))]
        run_pretrain.os = _OsWithEkd("os")
        run_pretrain.Runner = checked_runner_class(run_pretrain.Runner)
        runner_module.torch = _RunnerCheckpointWrites.Torch("torch")
        runner_module.os = _RunnerCheckpointWrites.Os("os")
        try:
            yield run_pretrain
        finally:
            for module, name, value in reversed(saved):
                setattr(module, name, value)
