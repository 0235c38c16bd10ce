"""End to end: ``run/run_pretrain.py`` through s3prl's Runner and under torchrun (2-process gloo DDP).

A 6-step run of the script with s3prl's Runner (the loss falls), its resume from step 3 (the next
losses are the same numbers), a fresh 2-process DDP run under torchrun, the DDP checkpoint
resumed by s3prl's Runner, the s3prl checkpoint resumed by the DDP runner, and the checkpoints
loaded as ``ekd_student`` through ``s3prl.hub``. The two fresh runs are real subprocesses (the
script, torchrun), and so is the resume compared with the first run number for number; the
other resumes run ``launch.main`` in this process (another thread count: compared within a
stated tolerance) to save start-up time.
"""

import os
import sys

import pytest
import torch
from pretrain_helpers import (
    event_files,
    read_scalars,
    run_in_process,
    run_script,
    tiny_runner_config,
    tiny_upstream_config,
    write_yaml,
)

pytestmark = pytest.mark.slow  # end to end: `pytest -m "not slow"` leaves it out

PREFIX = "ekd/train-"
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]


def losses(expdir, run=None):
    """step -> logged loss, of every run that wrote to ``expdir`` or of the ``run``-th (each run writes one events file)."""
    files = event_files(expdir)
    return {step: v for f in (files if run is None else [files[run]]) for step, v in read_scalars(f)[PREFIX + "loss"]}


@pytest.fixture(scope="module")
def configs(tiny_librispeech, tiny_teachers, tmp_path_factory):
    folder = tmp_path_factory.mktemp("configs")
    teachers = [
        {"name": "hubert", "upstream": "hubert_local", "ckpt": tiny_teachers["hubert"]},
        {"name": "wavlm", "upstream": "wavlm_local", "ckpt": tiny_teachers["wavlm"]},
    ]
    runner = tiny_runner_config(tiny_librispeech, total_steps=6, save_step=3, max_keep=10)
    # the DDP run also accumulates 2 micro-batches per update (no all-reduce on the first)
    ddp_runner = tiny_runner_config(tiny_librispeech, total_steps=6, save_step=3, max_keep=10, gradient_accumulate_steps=2)
    return {
        "runner": write_yaml(runner, folder / "runner.yaml"),
        "ddp_runner": write_yaml(ddp_runner, folder / "ddp_runner.yaml"),
        "upstream": write_yaml(tiny_upstream_config(teachers, "multihead"), folder / "ekd_multihead_tiny.yaml"),
    }


@pytest.fixture(scope="module")
def s3prl_run(configs, tmp_path_factory):
    """6 steps of ``python run/run_pretrain.py`` (s3prl's Runner; checkpoints at 3 and 6), then a resume from step 3."""
    cwd = str(tmp_path_factory.mktemp("s3prl_path"))
    run_script(["-u", "ekd", "-c", configs["runner"], "-g", configs["upstream"], "-n", "exp"], cwd)
    expdir = os.path.join(cwd, "result", "pretrain", "exp")
    first = losses(expdir)
    names = sorted(os.listdir(expdir))
    # a subprocess as the first run (one thread): the same kernels and reductions, so the same bits;
    # writes to the same folder, as s3prl does
    run_script(["-e", os.path.join(expdir, "states-3.ckpt")], cwd)
    return {"cwd": cwd, "expdir": expdir, "first": first, "resumed": losses(expdir, run=-1), "names": names}


def test_short_pretraining_lowers_the_loss(s3prl_run):
    first = s3prl_run["first"]
    assert sorted(first) == [1, 2, 3, 4, 5, 6]
    print(f"s3prl Runner, tiny EKD multihead: loss step 1 {first[1]:.4f} -> step 6 {first[6]:.4f}")
    assert first[6] < first[1] * 0.95
    tags = read_scalars(s3prl_run["expdir"])
    for tag in ("loss", "lr", "gradient-norm", "hubert/L2/l1", "hubert/L4/cos", "wavlm/L4/loss"):
        assert PREFIX + tag in tags, tag
    names = s3prl_run["names"]
    assert {"states-3.ckpt", "states-6.ckpt", "config_model.yaml", "config_runner.yaml"} <= set(names)
    assert not [n for n in names if "epoch" in n]  # s3prl's states-epoch-1.ckpt renamed to its step


def test_resume_reproduces_the_uninterrupted_losses(s3prl_run):
    resumed, first = s3prl_run["resumed"], s3prl_run["first"]
    assert sorted(resumed) == [4, 5, 6]
    for step in (4, 5, 6):  # same data, crops, dropout and optimizer state: the same numbers
        assert resumed[step] == first[step], (step, resumed, first)


@pytest.fixture(scope="module")
def ddp_run(configs, tmp_path_factory):
    """A fresh 6-step run under torchrun with 2 gloo processes on CPU, 2 batches an update (checkpoints at 3 and 6)."""
    cwd = str(tmp_path_factory.mktemp("ddp_path"))
    proc = run_script(["-u", "ekd", "-c", configs["ddp_runner"], "-g", configs["upstream"], "-n", "exp"], cwd, launcher=TORCHRUN)
    return {"cwd": cwd, "expdir": os.path.join(cwd, "result", "pretrain", "exp"), "log": proc.stdout + proc.stderr}


def test_ddp_run_trains_and_rank0_alone_writes(ddp_run):
    names = sorted(os.listdir(ddp_run["expdir"]))
    assert [n for n in names if n.startswith("states-")] == ["states-3.ckpt", "states-6.ckpt"]
    assert len([n for n in names if n.startswith("events.")]) == 1  # rank 0's log only
    assert "[DDPRunner] - 2 processes; batch 2 x 2 x 2 accumulation" in ddp_run["log"]
    assert not [n for n in names if n.endswith(".tmp")]  # atomic writes leave no partial files
    loss = losses(ddp_run["expdir"])
    assert sorted(loss) == [1, 2, 3, 4, 5, 6] and all(v == v for v in loss.values())
    print(f"torchrun 2 gloo processes: loss step 1 {loss[1]:.4f} -> step 6 {loss[6]:.4f}")
    assert loss[6] < loss[1]


def test_ddp_checkpoint_resumes_in_s3prl_runner_and_loads_as_ekd_student(ddp_run, tmp_path):
    import s3prl.hub

    import s3prl_ekd
    from s3prl_ekd.io.checkpoint import safe_load

    run_in_process(["-e", os.path.join(ddp_run["expdir"], "states-3.ckpt")], str(tmp_path))  # s3prl's Runner
    expdir = os.path.join(str(tmp_path), "result", "pretrain", "exp")  # the checkpoint's relative expdir
    assert sorted(losses(expdir)) == [4, 5, 6]
    assert "states-6.ckpt" in os.listdir(expdir)

    state = safe_load(os.path.join(ddp_run["expdir"], "states-6.ckpt"))
    assert state["Step"] == 6 and "Optimizer" in state and "Scheduler" in state
    s3prl_ekd.register()
    upstream = s3prl.hub.ekd_student(ckpt=os.path.join(ddp_run["expdir"], "states-6.ckpt"))
    with torch.no_grad():
        hidden = upstream([torch.randn(16000)])["hidden_states"]
    assert len(hidden) == 3 and hidden[-1].shape == (1, 49, 32)


def test_s3prl_checkpoint_resumes_in_the_ddp_runner(s3prl_run, tmp_path):
    run_in_process(["-e", os.path.join(s3prl_run["expdir"], "states-3.ckpt")], str(tmp_path), distributed=True)
    expdir = os.path.join(str(tmp_path), "result", "pretrain", "exp")
    resumed = losses(expdir)
    assert sorted(resumed) == [4, 5, 6]
    # one process of the same batch size: the DDP runner continues where s3prl's stopped. Not
    # bitwise: this process runs more threads than the 1-thread first run, so float reductions
    # differ in the last bits (~1e-7 relative per step on AMX and AVX-512 kernels alike)
    assert all(resumed[s] == pytest.approx(s3prl_run["first"][s], rel=1e-5) for s in (4, 5, 6))
    assert "states-6.ckpt" in os.listdir(expdir)


@pytest.mark.parametrize("bad", ["missing", "not_a_checkpoint", "unknown_upstream"])
def test_a_bad_teacher_stops_run_pretrain_before_step_one(bad, tiny_librispeech, tiny_teachers, tmp_path):
    """``run/run_pretrain.py`` with a teacher it cannot load ends with an error naming the teacher
    and what to fix, before any step: no checkpoint, no TensorBoard loss."""
    from s3prl_ekd.teachers.spec import TeacherError

    good = {"name": "hubert", "upstream": "hubert_local", "ckpt": tiny_teachers["hubert"]}
    if bad == "missing":
        spec, match = {"name": "robust", "upstream": "hubert_local", "ckpt": str(tmp_path / "nope.pt")}, r"robust.*nope\.pt.*does not exist"
    elif bad == "not_a_checkpoint":
        junk = tmp_path / "junk.pt"
        junk.write_bytes(b"this is no checkpoint")
        spec, match = {"name": "robust", "upstream": "hubert_local", "ckpt": str(junk)}, r"robust.*junk\.pt cannot be read"
    else:
        spec, match = {"name": "robust", "upstream": "hubert_nonexistent"}, r"robust.*hubert_nonexistent"
    runner = write_yaml(tiny_runner_config(tiny_librispeech, total_steps=2), tmp_path / "runner.yaml")
    upstream = write_yaml(tiny_upstream_config([good, spec], "average"), tmp_path / "upstream.yaml")
    with pytest.raises(TeacherError, match=match):
        run_in_process(["-u", "ekd", "-c", runner, "-g", upstream, "-n", "bad"], str(tmp_path))
    expdir = tmp_path / "result" / "pretrain" / "bad"
    assert not list(expdir.glob("*.ckpt"))  # (an empty list too when the folder was never made)
    logged = read_scalars(str(expdir)) if expdir.is_dir() and event_files(str(expdir)) else {}
    assert PREFIX + "loss" not in logged


def test_ddp_trains_a_student_with_a_frozen_conv_extractor(tiny_librispeech, tiny_teachers, tmp_path):
    """``feature_grad_mult: 0`` freezes the conv extractor: a 2-process torchrun run trains past
    step 2 (DDP waits for no gradient the frozen part never gets) and writes its checkpoints; the
    frozen weights are the same in both, the trained ones moved."""
    from s3prl_ekd.io.checkpoint import safe_load

    teachers = [{"name": "hubert", "upstream": "hubert_local", "ckpt": tiny_teachers["hubert"]}]
    upstream = tiny_upstream_config(teachers, "single")
    upstream["student"]["feature_grad_mult"] = 0.0
    runner = tiny_runner_config(tiny_librispeech, total_steps=4, save_step=2, max_keep=10)
    args = ["-u", "ekd", "-c", write_yaml(runner, tmp_path / "runner.yaml"),
            "-g", write_yaml(upstream, tmp_path / "frozen.yaml"), "-n", "exp"]
    run_script(args, str(tmp_path), launcher=TORCHRUN)
    expdir = tmp_path / "result" / "pretrain" / "exp"
    assert sorted(losses(str(expdir))) == [1, 2, 3, 4]
    at2, at4 = (safe_load(str(expdir / f"states-{s}.ckpt"))["Student"] for s in (2, 4))
    frozen = [k for k in at4 if k.startswith("feature_extractor.")]
    assert frozen and all(torch.equal(at2[k], at4[k]) for k in frozen)
    trained = [k for k in at4 if k.startswith("encoder.layers.")]
    assert trained and all(not torch.equal(at2[k], at4[k]) for k in trained if k.endswith("weight"))


@pytest.mark.parametrize("run", ["s3prl_run", "ddp_run"])
def test_saved_optimizer_state_holds_the_recipes_weight_decay(run, request):
    """The shipped runner config's optimizer (what the tiny runs use, but for the lr) saves weight
    decay 0.01 for the student's weights and 0 for its biases, as s3prl's AdamW_with_schedule."""
    from s3prl_ekd.distill.student_checkpoint import load_student
    from s3prl_ekd.io.checkpoint import safe_load

    path = os.path.join(request.getfixturevalue(run)["expdir"], "states-6.ckpt")
    state = safe_load(path)
    assert state["Config"]["optimizer"]["weight_decay"] == 0.01 and state["Config"]["optimizer"]["no_decay"] == ["bias"]
    groups = state["Optimizer"]["param_groups"]
    assert [g["weight_decay"] for g in groups] == [0.01, 0.0]
    student, _ = load_student(path)
    names = [n for n, p in student.named_parameters() if p.requires_grad]
    weights = [n for n in names if "bias" not in n]
    biases = [n for n in names if "bias" in n]
    assert len(groups[0]["params"]) == len(weights) and len(groups[1]["params"]) == len(biases) > 0
    assert any("layer_norm.weight" in n for n in weights)  # decayed, as s3prl's name filter leaves them
    # the saved moments follow the parameters' order: the second group's are the biases' shapes
    shapes = {i: tuple(s["exp_avg"].shape) for i, s in state["Optimizer"]["state"].items()}
    params = dict(student.named_parameters())
    assert [shapes[i] for i in groups[1]["params"]] == [tuple(params[n].shape) for n in biases]
    assert [shapes[i] for i in groups[0]["params"]] == [tuple(params[n].shape) for n in weights]
