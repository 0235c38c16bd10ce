import os

import pytest
import torch

from s3prl_ekd.distill.student import EKDStudent
from s3prl_ekd.distill.student_checkpoint import load_student, save_student
from s3prl_ekd.distill.targets import TargetPlan
from s3prl_ekd.io.atomic import atomic_save
from s3prl_ekd.io.checkpoint import CheckpointError


def _student(cfg, scheme="multihead", teachers=None):
    return EKDStudent(cfg, TargetPlan.from_scheme(scheme, teachers or {"a": 32, "b": 48})).eval()


def test_round_trip_keeps_config_plan_weights(tmp_path, tiny_student_config):
    s = _student(tiny_student_config)
    path = save_student(s, tmp_path / "s.ckpt", step=7, teachers=[{"name": "a"}])
    # the file is plain data: loadable with weights_only=True by anyone
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "s3prl-ekd/student" and raw["Step"] == 7
    loaded, state = load_student(path)
    assert loaded.plan == s.plan
    assert loaded.config == s.config
    wav = [torch.randn(8000)]
    with torch.no_grad():
        a, b = s(wav), loaded.eval()(wav)
    for x, y in zip(a.hidden_states + a.predictions, b.hidden_states + b.predictions):
        assert torch.equal(x, y)


def test_atomic_save_leaves_no_temp_and_keeps_old_on_failure(tmp_path):
    path = tmp_path / "x.ckpt"
    atomic_save({"v": torch.ones(2)}, path)

    class Boom:
        def __reduce__(self):
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_save({"v": Boom()}, path)
    assert torch.equal(torch.load(path, weights_only=True)["v"], torch.ones(2))
    assert os.listdir(tmp_path) == ["x.ckpt"]


def test_not_a_student_checkpoint(tmp_path):
    p = tmp_path / "d.ckpt"
    torch.save({"Config": {}, "Distiller": {}}, p)
    with pytest.raises(CheckpointError, match=r"not an s3prl-ekd student checkpoint.*distiller_local"):
        load_student(p)


def test_missing_empty_truncated(tmp_path, tiny_student_config):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_student(tmp_path / "nope.ckpt")
    (tmp_path / "empty.ckpt").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        load_student(tmp_path / "empty.ckpt")
    good = save_student(_student(tiny_student_config), tmp_path / "good.ckpt")
    data = good.read_bytes()
    (tmp_path / "cut.ckpt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or damaged"):
        load_student(tmp_path / "cut.ckpt")
