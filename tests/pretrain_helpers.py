"""Helpers of the pretraining tests: tiny configs, running ``run_pretrain.py``, TensorBoard reading.

The tiny LibriSpeech folder they train on is the ``tiny_librispeech`` fixture of ``conftest.py``.
"""

from __future__ import annotations

import glob
import os
import socket
import struct
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Tuple

import pytest
import yaml
from conftest import ROOT, TINY_STUDENT


def tiny_runner_config(data: Dict[str, str], total_steps: int = 6, **runner) -> dict:
    """A runner config (s3prl's layout) for a few CPU steps on the tiny corpus."""
    with open(os.path.join(ROOT, "upstream_configs", "pretrain_runner.yaml")) as f:
        config = yaml.safe_load(f)
    config["runner"].update(
        total_steps=total_steps, log_step=1, save_step=3, max_keep=2, fp16=False, gradient_accumulate_steps=1
    )
    config["runner"].update(runner)
    config["optimizer"]["lr"] = 2e-3
    config["scheduler"]["warmup_proportion"] = 0.2
    config["pretrain_expert"]["datarc"].update(
        num_workers=0, train_batch_size=2, libri_root=data["libri_root"], file_path=data["file_path"],
        sets=["train-clean-100"], pin_memory=False,
    )
    return config


def tiny_upstream_config(teachers: List[dict], scheme: str = "single", **extra) -> dict:
    """An upstream config with the tiny student; crops at 1 s so cropping is exercised."""
    config = {
        "teachers": teachers,
        "targets": {"scheme": scheme, "layers": [2, 4]},
        "student": dict(TINY_STUDENT),
        "task": {"sequence_length": 16000},
    }
    config.update(extra)
    return config


def write_yaml(obj: dict, path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        yaml.safe_dump(obj, f)
    return str(path)


def run_script(args: List[str], cwd: str, extra_env: Dict[str, str] | None = None, launcher: List[str] | None = None) -> subprocess.CompletedProcess:
    """Run ``run/run_pretrain.py`` (or a launcher around it) in a subprocess with one thread per
    process; fail with its output. Runs whose losses are compared number for number must all run
    this way: a different thread count changes float reductions in the last bits."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    for key in ("LOCAL_RANK", "RANK", "WORLD_SIZE"):
        env.pop(key, None)
    env.update(extra_env or {})
    cmd = (launcher or [sys.executable]) + [os.path.join(ROOT, "run", "run_pretrain.py")] + args
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    return proc


def event_files(expdir: str) -> List[str]:
    """The TensorBoard event files of a folder, oldest first (one per run writing there)."""
    return sorted(glob.glob(os.path.join(expdir, "events.out.tfevents.*")), key=os.path.getmtime)


def read_scalars(expdir_or_file: str) -> Dict[str, List[Tuple[int, float]]]:
    """TensorBoard scalars of a folder (all its event files) or of one event file: tag -> [(step, value)].

    Read with tensorboardX's protocol buffers (the ``tensorboard`` package is not installed)."""
    from tensorboardX.proto import event_pb2

    out: Dict[str, List[Tuple[int, float]]] = {}
    paths = [expdir_or_file] if os.path.isfile(expdir_or_file) else event_files(expdir_or_file)
    for path in paths:
        with open(path, "rb") as f:
            data = f.read()
        pos = 0
        while pos + 12 <= len(data):
            (length,) = struct.unpack("<Q", data[pos : pos + 8])
            record = data[pos + 12 : pos + 12 + length]
            pos += 12 + length + 4
            event = event_pb2.Event()
            event.ParseFromString(record)
            for value in event.summary.value:
                out.setdefault(value.tag, []).append((event.step, value.simple_value))
    return out


def run_in_process(args: List[str], cwd: str, distributed: bool = False) -> None:
    """``run/run_pretrain.py ARGS`` in this process (as one DDP process of world size 1 if asked)."""
    from s3prl_ekd.pretrain import launch

    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(cwd)
        mp.setattr(sys, "argv", ["run_pretrain.py"])
        for key in ("LOCAL_RANK", "WORLD_SIZE", "RANK"):
            mp.delenv(key, raising=False)
        if distributed:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            for key, value in dict(LOCAL_RANK="0", RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)).items():
                mp.setenv(key, value)
        launch.main(list(args))
