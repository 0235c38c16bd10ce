"""The run-time check of autocast teacher targets against fp32 (``s3prl_ekd.teachers.autocast_check``).

The wrong teacher is made wrong on purpose: a forward hook that distorts its hidden states only
while autocast is on, so the test means the same on every CPU, whatever kernels it picks. The
correct teachers are the tiny ones (16 channels per positional-conv group, where bf16 is right
on AMD and on Intel with AMX alike).
"""

import os

import pytest
import torch
from pretrain_helpers import (
    event_files,
    read_scalars,
    run_in_process,
    tiny_runner_config,
    tiny_upstream_config,
    write_yaml,
)

from s3prl_ekd.distill.targets import TargetPlan
from s3prl_ekd.teachers.autocast_check import AutocastMismatchError, valid_frames
from s3prl_ekd.teachers.ensemble import Teacher, TeacherEnsemble
from s3prl_ekd.teachers.speedups import SpeedupConfigError, TeacherSpeedups

LAYERS = [1, 2, 3]


def _distort_under_autocast(teacher, scale: float = 3.0):
    """Hook ``teacher`` so that under CPU autocast its hidden states get noise ``scale`` x their
    own spread (frame cosine ~ 1 / sqrt(1 + scale^2)); in fp32 it is untouched."""

    def hook(module, inputs, output):
        if not torch.is_autocast_enabled("cpu"):
            return output
        g = torch.Generator().manual_seed(0)
        return [h + scale * h.float().std() * torch.randn(h.shape, generator=g).to(h) for h in output]

    return teacher.register_forward_hook(hook)


def _ensemble(tiny_teachers, **speedups):
    specs = [{"name": "hubert", "upstream": "hubert_local", "ckpt": tiny_teachers["hubert"]},
             {"name": "wavlm", "upstream": "wavlm_local", "ckpt": tiny_teachers["wavlm"]}]
    plan = TargetPlan.from_scheme("average", {"hubert": 32, "wavlm": 32}, layers=LAYERS)
    return TeacherEnsemble(specs, plan, speedups=TeacherSpeedups.from_config(speedups))


def _wavs():
    g = torch.Generator().manual_seed(0)
    return [torch.randn(n, generator=g) * 0.1 for n in (16000, 12000)]


def test_valid_frames_by_hand():
    # 16000 samples / 320 = 50 frames, cut to the batch's 49; 12000 / 320 = 37.5 -> 37
    assert valid_frames([16000, 12000, 100], 320, 49).tolist() == [49, 37, 1]


def test_threshold_key_is_checked():
    assert TeacherSpeedups().autocast_min_cosine == 0.99
    assert TeacherSpeedups.from_config({"autocast_min_cosine": 0.5}).autocast_min_cosine == 0.5
    for bad in (1.5, "high", True):
        with pytest.raises(SpeedupConfigError, match=r"`teacher_speedups\.autocast_min_cosine` must be a finite number >= -1 and <= 1"):
            TeacherSpeedups.from_config({"autocast_min_cosine": bad})
    with pytest.raises(SpeedupConfigError, match="unknown speed-up 'autocast_min_cosine'"):
        TeacherSpeedups().without("autocast_min_cosine")  # a threshold, not a switch to ablate
    assert "autocast_min_cosine" not in TeacherSpeedups().switches_on()


def test_correct_teachers_pass_and_the_agreement_is_kept(tiny_teachers, capsys):
    ensemble = _ensemble(tiny_teachers, autocast="bf16")
    ensemble(_wavs())
    agreement = ensemble.autocast_agreement
    assert agreement is not None and agreement.passed and agreement.dtype == "bfloat16" and agreement.device == "cpu"
    assert set(agreement.teachers) == {"hubert", "wavlm"}
    for numbers in agreement.teachers.values():
        assert 0.99 <= numbers["cos_min"] <= numbers["cos_mean"] <= 1.0
        assert 0 < numbers["max_rel_diff"] < 0.1  # bf16 did run: not identical to fp32
    assert "teachers under bfloat16 autocast on cpu vs fp32 (first batch): hubert cos min" in capsys.readouterr().out
    ensemble(_wavs())  # checked once per run: the second batch keeps the first batch's numbers
    assert ensemble.autocast_agreement is agreement


def test_fp32_teachers_are_not_checked(tiny_teachers):
    ensemble = _ensemble(tiny_teachers, autocast="auto")  # auto = fp32 on CPU
    ensemble(_wavs())
    assert ensemble.autocast_agreement is None


def test_a_teacher_wrong_under_autocast_stops_with_its_name_cosine_device_and_fix(tiny_teachers):
    ensemble = _ensemble(tiny_teachers, autocast="bf16")
    _distort_under_autocast(ensemble.teachers["wavlm"])
    with pytest.raises(AutocastMismatchError) as info:
        ensemble(_wavs())
    message = str(info.value)
    cos = info.value.agreement.teachers["wavlm"]["cos_min"]
    assert cos < 0.5 and info.value.agreement.teachers["hubert"]["cos_min"] >= 0.99
    assert "teacher 'wavlm' under bfloat16 autocast on cpu" in message
    assert f"minimum frame cosine {cos:.4f}" in message and "autocast_min_cosine = 0.99" in message
    assert "teacher_speedups: {autocast: off}" in message
    with pytest.raises(AutocastMismatchError):  # caught and called again: still refused
        ensemble(_wavs())
    ensemble.autocast_check = "report"  # the benchmark's mode: reported, not raised
    ensemble(_wavs())


def test_the_threshold_comes_from_the_config(tiny_teachers):
    ensemble = _ensemble(tiny_teachers, autocast="bf16", autocast_min_cosine=-1.0)
    _distort_under_autocast(ensemble.teachers["wavlm"])
    ensemble(_wavs())
    assert ensemble.autocast_agreement.passed and ensemble.autocast_agreement.min_cosine == -1.0


def _run(tiny_librispeech, tiny_teachers, tmp_path, name, speedups):
    teachers = [{"name": "hubert", "upstream": "hubert_local", "ckpt": tiny_teachers["hubert"]},
                {"name": "wavlm", "upstream": "wavlm_local", "ckpt": tiny_teachers["wavlm"]}]
    runner = write_yaml(tiny_runner_config(tiny_librispeech, total_steps=3, save_step=2), tmp_path / "runner.yaml")
    upstream = write_yaml(tiny_upstream_config(teachers, "average", teacher_speedups=speedups), tmp_path / "up.yaml")
    run_in_process(["-u", "ekd", "-c", runner, "-g", upstream, "-n", name], str(tmp_path))
    return tmp_path / "result" / "pretrain" / name


@pytest.mark.slow
def test_run_pretrain_with_a_wrong_autocast_teacher_stops_before_step_one(tiny_librispeech, tiny_teachers, tmp_path, monkeypatch):
    original = Teacher.forward

    def wavlm_wrong_under_autocast(self, wavs):
        hidden = original(self, wavs)
        if self.name == "wavlm" and torch.is_autocast_enabled("cpu"):
            hidden = [-h for h in hidden]  # frame cosine -1
        return hidden

    monkeypatch.setattr(Teacher, "forward", wavlm_wrong_under_autocast)
    with pytest.raises(AutocastMismatchError, match=r"teacher 'wavlm' under bfloat16 autocast on cpu .* minimum frame cosine -1\.0000"):
        _run(tiny_librispeech, tiny_teachers, tmp_path, "wrong", {"autocast": "bf16"})
    expdir = tmp_path / "result" / "pretrain" / "wrong"
    assert not list(expdir.glob("*.ckpt"))
    logged = read_scalars(str(expdir)) if expdir.is_dir() and event_files(str(expdir)) else {}
    assert "ekd/train-loss" not in logged  # no step was taken


@pytest.mark.slow
def test_run_pretrain_with_correct_autocast_teachers_logs_the_agreement_once(tiny_librispeech, tiny_teachers, tmp_path, capsys):
    expdir = _run(tiny_librispeech, tiny_teachers, tmp_path, "right", {"autocast": "bf16"})
    assert capsys.readouterr().out.count("teachers under bfloat16 autocast on cpu vs fp32 (first batch)") == 1
    logged = read_scalars(str(expdir))
    assert [s for s, _ in logged["ekd/train-loss"]] == [1, 2, 3]
    for name in ("hubert", "wavlm"):
        (step, cos_min), = logged[f"teacher_autocast/{name}/cos_min"]  # logged once
        assert step == 1 and 0.99 <= cos_min <= 1.0
        assert f"teacher_autocast/{name}/max_rel_diff" in logged and f"teacher_autocast/{name}/cos_mean" in logged
    assert os.path.exists(expdir / "states-2.ckpt")
