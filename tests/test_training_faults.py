"""Faults during pretraining: a NaN/inf step is skipped, a SIGKILLed run resumes with the same losses.

Reuses the pretraining tests' tiny corpus, configs and helpers (``pretrain_helpers``,
``test_pretrain_run``). Checkpoint writing under a crash and ``max_keep`` are in
``test_checkpoint_rotation.py``.
"""

import logging
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch
from pretrain_helpers import run_in_process, run_script, tiny_runner_config, tiny_upstream_config, write_yaml
from test_pretrain_run import losses

from s3prl_ekd.io.checkpoint import safe_load
from s3prl_ekd.pretrain.checkpoint_rotation import latest_complete, numbered_checkpoints

pytestmark = pytest.mark.slow  # end to end: `pytest -m "not slow"` leaves it out

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def fault_configs(tiny_librispeech, tiny_teachers, tmp_path_factory):
    folder = tmp_path_factory.mktemp("fault_configs")
    teachers = [{"name": "hubert", "upstream": "hubert_local", "ckpt": tiny_teachers["hubert"]}]
    return {
        "short": write_yaml(tiny_runner_config(tiny_librispeech, total_steps=4, save_step=2, max_keep=2), folder / "short.yaml"),
        "long": write_yaml(tiny_runner_config(tiny_librispeech, total_steps=6, save_step=2, max_keep=2), folder / "long.yaml"),
        "keep1": write_yaml(tiny_runner_config(tiny_librispeech, total_steps=4, save_step=2, max_keep=1), folder / "keep1.yaml"),
        "upstream": write_yaml(tiny_upstream_config(teachers, "single"), folder / "upstream.yaml"),
    }


@pytest.mark.parametrize("distributed", [False, True], ids=["s3prl_runner", "ddp_runner"])
def test_nonfinite_loss_skips_the_step_and_training_goes_on(distributed, fault_configs, tmp_path, monkeypatch, caplog, capsys):
    """Under s3prl's Runner and under our DDP runner (torchrun's path, one process here)."""
    from s3prl_ekd.distill.loss import DistillLoss

    real_forward = DistillLoss.forward
    calls = []

    def poisoned(self, *args, **kwargs):
        loss, records = real_forward(self, *args, **kwargs)
        calls.append(1)
        return (loss * float("nan"), records) if len(calls) == 2 else (loss, records)

    monkeypatch.setattr(DistillLoss, "forward", poisoned)
    with caplog.at_level(logging.WARNING, logger="s3prl_ekd.pretrain.step_guard"):
        run_in_process(["-u", "ekd", "-c", fault_configs["short"], "-g", fault_configs["upstream"], "-n", "exp"], str(tmp_path),
                       distributed=distributed)
    # a NaN gradient norm is caught by the runner's own check (s3prl's message), an inf one by
    # the optimizer's step guard: either way step 2 is skipped and the log says so
    said = caplog.text + capsys.readouterr().out
    assert "grad norm is NaN at global step 2" in said or "optimizer step 2 skipped" in said, said[-3000:]
    expdir = tmp_path / "result" / "pretrain" / "exp"
    logged = losses(str(expdir))
    assert sorted(logged) == [1, 2, 3, 4]
    assert all(torch.isfinite(torch.tensor(logged[s])) for s in (1, 3, 4))
    state = safe_load(latest_complete(expdir))
    assert state["Step"] == 4
    assert all(torch.isfinite(w).all() for w in state["Student"].values())


def _ddp_env():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    env.update(LOCAL_RANK="0", RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    return env


def test_sigkill_mid_run_resumes_from_the_last_checkpoint_with_the_same_losses(fault_configs, tmp_path):
    args = ["-u", "ekd", "-c", fault_configs["long"], "-g", fault_configs["upstream"], "-n", "exp"]
    reference = tmp_path / "uninterrupted"
    reference.mkdir()
    # the reference, the killed run and the resume all run as one-thread subprocesses: the same
    # kernels and reductions, so the losses agree to float round-off whatever the CPU
    run_script(args, str(reference), extra_env=_ddp_env())
    expected = losses(str(reference / "result" / "pretrain" / "exp"))
    assert sorted(expected) == list(range(1, 7))

    cwd = tmp_path / "killed"
    cwd.mkdir()
    expdir = cwd / "result" / "pretrain" / "exp"
    proc = subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "run", "run_pretrain.py")] + args,
        cwd=cwd, env=_ddp_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 280
        while not numbered_checkpoints(expdir) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr.read()[-3000:]!r}"
        os.kill(proc.pid, signal.SIGKILL)  # no handler, no cleanup: as a pre-empted node
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    steps = [s for s, _ in numbered_checkpoints(expdir)]
    assert steps and max(steps) < 6  # killed mid-run

    last = latest_complete(expdir)
    done = safe_load(last)["Step"]
    run_script(["-e", str(last)], str(cwd), extra_env=_ddp_env())
    resumed = losses(str(expdir), run=-1)
    # at most the steps since the checkpoint are lost, and they are redone with the same numbers
    assert sorted(resumed) == list(range(done + 1, 7))
    for step, value in resumed.items():
        assert value == pytest.approx(expected[step], rel=1e-6, abs=1e-7), (step, resumed, expected)


def test_s3prl_runner_crash_while_writing_keeps_the_previous_checkpoint(fault_configs, tmp_path, monkeypatch):
    """s3prl's Runner with ``max_keep: 1`` deletes the old checkpoint before writing; ours must not."""
    real_save = torch.save
    saves = []

    def save_then_fail(obj, f, *args, **kwargs):
        saves.append(1)
        if len(saves) == 2:  # the step-4 checkpoint: part of it written, then the disk fills up
            f.write(b"PK\x03\x04" + bytes(4096))
            raise OSError(28, "No space left on device")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save_then_fail)
    with pytest.raises(OSError, match="No space left"):
        run_in_process(["-u", "ekd", "-c", fault_configs["keep1"], "-g", fault_configs["upstream"], "-n", "exp"], str(tmp_path))
    expdir = tmp_path / "result" / "pretrain" / "exp"
    assert sorted(n for n in os.listdir(expdir) if "states-" in n) == ["states-2.ckpt"]  # no partial file either
    state = safe_load(expdir / "states-2.ckpt")
    assert state["Step"] == 2 and all(torch.isfinite(w).all() for w in state["Student"].values())
