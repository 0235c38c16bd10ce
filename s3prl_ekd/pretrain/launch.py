"""Run s3prl's own ``run_pretrain.py`` with ``-u ekd``, or the DDP runner under ``torchrun``.

s3prl 0.4.18's ``run_pretrain.py`` expects to run inside ``site-packages/s3prl``: it imports
``pretrain.runner``, ``utility.helper``, ``optimizers`` and ``schedulers`` as top-level modules,
takes its ``-u`` choices from ``os.listdir('pretrain/')`` and defaults ``-c`` to
``pretrain/<name>/config_runner.yaml``. Without editing or copying its files we:

* alias those modules in ``sys.modules`` (and ``pretrain.ekd.pretrain_expert`` to our expert);
* give its module a view of ``os`` whose ``listdir('pretrain/')`` lists ``ekd``;
* default ``-c`` to ``upstream_configs/pretrain_runner.yaml`` (and ``--device`` to ``cpu``
  without CUDA);
* run it with every ``torch.load`` replaced by our checked reader (``load_guard``:
  ``weights_only=True``, ``argparse.Namespace`` allowed, which its resume (``-e``) needs, layer
  strings checked), after refusing ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD``;
* check the runner config for unknown keys before s3prl's Runner starts;
* give its Runner a view of ``torch`` whose ``save`` is ``checkpoint.atomic_save``: a crash while
  writing never leaves a truncated ``states-<step>.ckpt``, which ``-e DIR`` (highest number
  first) would pick;
* rename the Runner's last checkpoint ``states-epoch-<n>.ckpt`` to ``states-<step>.ckpt``, the
  name of every other checkpoint (and the DDP runner's): s3prl's ``-e DIR`` picks the highest
  number, which the epoch name hid (it resumed from an older checkpoint).
"""

from __future__ import annotations

import argparse
import glob
import os
import random
import sys
import types
from pathlib import Path
from typing import List, Optional

import numpy as np
import torch

from .. import register
from ..checkpoint import CheckpointError, allowed_globals, atomic_save
from ..checkpoint_rotation import recover_interrupted
from ..io.checkpoint_names import PREFIX, checkpoint_name, checkpoint_step
from ..load_guard import guarded_torch_load, refuse_unsafe_torch_env
from ..resources import UPSTREAM, ConfigNotFoundError, resolve_config, shipped_dir, shipped_names
from ..step_guard import STEP_TOTALS
from .config import PretrainConfigError, check_runner_config
from .optim import register_with_s3prl

EXPERT_NAME = "ekd"
DEFAULT_RUNNER_CONFIG = shipped_dir(UPSTREAM) / "pretrain_runner.yaml"
CONFIG_FLAGS = {"-g": UPSTREAM, "--upstream_config": UPSTREAM, "-c": UPSTREAM, "--config": UPSTREAM}


def install_s3prl_aliases() -> None:
    """Make s3prl's top-level imports and ``pretrain.ekd.pretrain_expert`` resolvable."""
    import s3prl.optimizers
    import s3prl.schedulers
    import s3prl.utility
    import s3prl.utility.helper

    sys.modules.setdefault("optimizers", s3prl.optimizers)
    sys.modules.setdefault("schedulers", s3prl.schedulers)
    sys.modules.setdefault("utility", s3prl.utility)
    sys.modules.setdefault("utility.helper", s3prl.utility.helper)
    import s3prl.pretrain
    import s3prl.pretrain.runner

    from .. import pretrain as ekd_pretrain
    from . import pretrain_expert

    sys.modules.setdefault("pretrain", s3prl.pretrain)
    sys.modules.setdefault("pretrain.runner", s3prl.pretrain.runner)
    sys.modules[f"pretrain.{EXPERT_NAME}"] = ekd_pretrain
    sys.modules[f"pretrain.{EXPERT_NAME}.pretrain_expert"] = pretrain_expert
    register_with_s3prl()
    register()


class _ModuleProxy(types.ModuleType):
    """A stand-in for ``module`` in one s3prl module's namespace: every attribute is the real
    module's except those the subclass defines."""

    _module: types.ModuleType

    def __init__(self):
        super().__init__(self._module.__name__)

    def __getattr__(self, name):
        return getattr(self._module, name)


class _TorchWithAtomicSave(_ModuleProxy):
    """``torch`` as s3prl's Runner sees it: ``torch.save`` writes atomically (temp file, fsync, rename)."""

    _module = torch

    @staticmethod
    def save(obj, path, *args, **kwargs):
        from ..checkpoint import allowed_globals, atomic_save

        return atomic_save(obj, path)


class _OsWithEkd(_ModuleProxy):
    """``os`` as s3prl's run_pretrain sees it: ``listdir('pretrain/')`` names our expert."""

    _module = os

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
            from ..checkpoint_rotation import save_numbered

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
            if os.path.basename(str(path)).startswith(PREFIX):
                _RunnerCheckpointWrites.pending.append(str(path))
            else:
                os.remove(path)


def s3prl_run_pretrain():
    """s3prl's ``run_pretrain`` module, importable from anywhere, with our names known."""
    install_s3prl_aliases()
    from s3prl import run_pretrain

    run_pretrain.os = _OsWithEkd()
    import s3prl.pretrain.runner

    s3prl.pretrain.runner.torch = _TorchWithAtomicSave()
    run_pretrain.Runner = _checked_runner_class(run_pretrain.Runner)
    import s3prl.pretrain.runner as runner_module

    runner_module.torch = _RunnerCheckpointWrites.Torch("torch")
    runner_module.os = _RunnerCheckpointWrites.Os("os")
    return run_pretrain


def _checked_runner_class(runner_cls):
    if getattr(runner_cls, "_ekd_checked", False):
        return runner_cls

    class CheckedRunner(runner_cls):
        """s3prl's Runner, after checking the runner config (it ignores unknown keys)."""

        _ekd_checked = True

        last_expdir: Optional[str] = None

        def __init__(self, args, config):
            check_runner_config(config, getattr(args, "config", None) or "runner config")
            CheckedRunner.last_expdir = args.expdir
            super().__init__(args, config)

    return CheckedRunner


def with_defaults(argv: List[str]) -> List[str]:
    """``argv`` with shipped config names (``-g ekd_average``) made paths, plus our defaults for
    flags whose s3prl default only works inside s3prl's folder."""
    argv = resolve_config_flags(argv)
    flags = set(a.split("=")[0] for a in argv)
    if flags & {"-h", "--help"}:
        return argv
    resuming = bool(flags & {"-e", "--past_exp", "-a", "--auto_resume"})
    if not resuming and not flags & {"-c", "--config"}:
        argv += ["-c", str(DEFAULT_RUNNER_CONFIG)]
    if not resuming and not flags & {"-g", "--upstream_config"}:
        configs = [n for n in shipped_names(UPSTREAM) if n != DEFAULT_RUNNER_CONFIG.stem]
        raise SystemExit(
            "run_pretrain.py -u ekd needs an upstream config: -g PATH or the name of a shipped one "
            f"({', '.join(configs) or 'none found'})"
        )
    if not flags & {"--device"} and not torch.cuda.is_available():
        argv += ["--device", "cpu"]
    return argv


def resolve_config_flags(argv: List[str]) -> List[str]:
    """``-g`` / ``-c`` values that name a shipped config (``ekd_average``) replaced by its path."""
    out = list(argv)
    for i, arg in enumerate(out):
        flag, eq, value = arg.partition("=")
        if flag not in CONFIG_FLAGS:
            continue
        j = i if eq else i + 1
        if j >= len(out):
            break
        value = value if eq else out[j]
        try:
            path = str(resolve_config(value, CONFIG_FLAGS[flag]))
        except ConfigNotFoundError as e:
            raise SystemExit(f"run_pretrain.py {flag}: {e}") from None
        out[j] = f"{flag}={path}" if eq else path
    return out


def resume_folder(argv: List[str]) -> Optional[str]:
    """The experiment folder a resuming command line (``-e``, ``-a``) reads checkpoints from."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("-e", "--past_exp")
    parser.add_argument("-a", "--auto_resume", action="store_true")
    parser.add_argument("-n", "--expname")
    parser.add_argument("-p", "--expdir")
    args, _ = parser.parse_known_args(argv)
    if args.past_exp:
        return args.past_exp if os.path.isdir(args.past_exp) else os.path.dirname(args.past_exp) or "."
    if args.auto_resume:
        return args.expdir or f"result/pretrain/{args.expname}"
    return None


def is_distributed_launch() -> bool:
    """True under torchrun (``LOCAL_RANK`` set) or any launcher setting ``WORLD_SIZE`` > 1."""
    return "LOCAL_RANK" in os.environ or int(os.environ.get("WORLD_SIZE", "1")) > 1


def main(argv: Optional[List[str]] = None) -> None:
    """``run/run_pretrain.py``: s3prl's Runner in one process, our DDP runner under torchrun."""
    try:  # first: with it set, torch unpickles whatever a checkpoint holds
        refuse_unsafe_torch_env("the checkpoints and teacher files of this run")
    except CheckpointError as e:
        raise SystemExit(f"run_pretrain.py: {e}") from None
    run_pretrain = s3prl_run_pretrain()
    saved_argv = sys.argv
    sys.argv = ["run_pretrain.py"] + with_defaults(sys.argv[1:] if argv is None else argv)
    folder = resume_folder(sys.argv[1:])
    if folder is not None and os.environ.get("RANK", "0") == "0":  # before s3prl picks the checkpoint to resume from
        recover_interrupted(folder)
    STEP_TOTALS.update(rounds=0, applied=0)
    try:
        # every torch.load of the run (s3prl's resume, its Runner, teachers) is our checked reader;
        # its resume (-e) loads the run's Args
        with guarded_torch_load(), allowed_globals([argparse.Namespace]):
            if is_distributed_launch():
                _main_distributed(run_pretrain)
            else:
                run_pretrain.main()
                rename_epoch_checkpoints(run_pretrain.Runner.last_expdir)
    except (PretrainConfigError, CheckpointError) as e:
        raise SystemExit(f"run_pretrain.py: {e}") from None
    finally:
        sys.argv = saved_argv
    check_some_step_trained()


def check_some_step_trained() -> None:
    """Exit non-zero when every optimizer step of the run was skipped for NaN/inf gradients."""
    if STEP_TOTALS["rounds"] and not STEP_TOTALS["applied"]:
        raise SystemExit(
            f"run_pretrain.py: all {STEP_TOTALS['rounds']} updates were skipped (NaN/inf gradients): the student "
            "did not train. Check the data, the teachers' outputs and the loss weights, or lower the lr"
        )


def rename_epoch_checkpoints(expdir: Optional[str]) -> None:
    """``states-epoch-<n>.ckpt`` -> ``states-<step>.ckpt`` (the step the checkpoint holds)."""
    from ..checkpoint import safe_load

    for path in glob.glob(os.path.join(expdir or "", f"{PREFIX}epoch-*.ckpt")):
        step = int(safe_load(path).get("Step") or 0)
        if step > 0:
            target = os.path.join(os.path.dirname(path), checkpoint_name(step))
            os.replace(path, target)
            print(f"[run_pretrain] - Renamed {path} to {target} (s3prl names the last checkpoint by epoch)")


def _main_distributed(run_pretrain) -> None:
    from .ddp_runner import DDPRunner, init_distributed

    rank = init_distributed()
    if rank != 0:
        run_pretrain.copyfile = lambda *a, **k: None  # rank 0 alone writes the experiment folder
    args, config = run_pretrain.get_pretrain_args()
    # as s3prl's main: one seed for all; each rank's data and dropout then derive from it
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    runner = DDPRunner(args, config)
    try:
        runner.train()
    finally:
        runner.close()
