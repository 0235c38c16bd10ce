"""Run s3prl's own ``run_pretrain.py`` with ``-u ekd``, or the DDP runner under ``torchrun``.

What this changes in s3prl's run_pretrain and Runner to run them from anywhere (module aliases,
``os`` / ``torch`` stand-ins, the runner config check) lives in
:mod:`s3prl_ekd.s3prl_compat.pretrain_runner`, applied for the run only. Here: ``-c`` defaults to
``upstream_configs/pretrain_runner.yaml`` (``--device`` to ``cpu`` without CUDA), shipped config
names become paths, every ``torch.load`` of the run is our checked reader (``load_guard``) after
refusing ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD``, and the Runner's last checkpoint
``states-epoch-<n>.ckpt`` is renamed ``states-<step>.ckpt`` (s3prl's ``-e DIR`` picks the highest
number, which the epoch name hid).
"""

from __future__ import annotations

import argparse
import glob
import os
import random
import sys
from typing import List, Optional

import numpy as np
import torch

from s3prl_ekd.config.resources import UPSTREAM, resolve_config_flags, shipped_dir, shipped_names
from s3prl_ekd.io.checkpoint import CheckpointError
from s3prl_ekd.io.checkpoint_names import PREFIX, checkpoint_name
from s3prl_ekd.io.load_guard import guarded_torch_load, refuse_unsafe_torch_env
from s3prl_ekd.io.safe_globals import allowed_globals
from s3prl_ekd.pretrain.checkpoint_rotation import recover_interrupted
from s3prl_ekd.pretrain.ekd.config import PretrainConfigError
from s3prl_ekd.pretrain.step_guard import STEP_TOTALS
from s3prl_ekd.s3prl_compat import pretrain_runner

DEFAULT_RUNNER_CONFIG = shipped_dir(UPSTREAM) / "pretrain_runner.yaml"
CONFIG_FLAGS = {"-g": UPSTREAM, "--upstream_config": UPSTREAM, "-c": UPSTREAM, "--config": UPSTREAM}


def with_defaults(argv: List[str]) -> List[str]:
    """``argv`` with shipped config names (``-g ekd_average``) made paths, plus our defaults for
    flags whose s3prl default only works inside s3prl's folder."""
    argv = resolve_config_flags(argv, CONFIG_FLAGS, "run_pretrain.py")
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
    run_argv = ["run_pretrain.py"] + with_defaults(sys.argv[1:] if argv is None else argv)
    folder = resume_folder(run_argv[1:])
    if folder is not None and os.environ.get("RANK", "0") == "0":  # before s3prl picks the checkpoint to resume from
        recover_interrupted(folder)
    STEP_TOTALS.update(rounds=0, applied=0)
    saved_argv, sys.argv = sys.argv, run_argv  # s3prl's parser reads sys.argv; restored after the run
    try:
        # every torch.load of the run (s3prl's resume, its Runner, teachers) is our checked reader;
        # its resume (-e) loads the run's Args
        with pretrain_runner.patched() as run_pretrain, guarded_torch_load(), allowed_globals([argparse.Namespace]):
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
    from s3prl_ekd.io.checkpoint import safe_load

    for path in glob.glob(os.path.join(expdir or "", f"{PREFIX}epoch-*.ckpt")):
        step = int(safe_load(path).get("Step") or 0)
        if step > 0:
            target = os.path.join(os.path.dirname(path), checkpoint_name(step))
            os.replace(path, target)
            print(f"[run_pretrain] - Renamed {path} to {target} (s3prl names the last checkpoint by epoch)")


def _main_distributed(run_pretrain) -> None:
    from s3prl_ekd.pretrain.ddp_runner import DDPRunner, init_distributed

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
