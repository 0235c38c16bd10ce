import os
import subprocess
import sys

import pytest
import torch
import yaml

from s3prl_ekd import register
from s3prl_ekd.distill.student import EKDStudent
from s3prl_ekd.distill.student_checkpoint import save_student
from s3prl_ekd.distill.targets import TargetPlan


@pytest.fixture
def ckpt(tmp_path, tiny_student_config):
    s = EKDStudent(tiny_student_config, TargetPlan.from_scheme("average", {"a": 32, "b": 32}))
    return str(save_student(s, tmp_path / "student.ckpt"))


def test_register_and_s3prl_upstream(ckpt):
    register()
    from s3prl.nn import S3PRLUpstream

    up = S3PRLUpstream("ekd_student", path_or_url=ckpt).eval()
    wavs = torch.randn(2, 16000)
    lens = torch.tensor([16000, 12000])
    hs, hs_len = up(wavs, lens)
    assert len(hs) == 3  # projected feature + 2 transformer layers; heads dropped by default
    # S3PRLUpstream pads our 49 frames to its own estimate of 16000 / 320 = 50
    assert all(h.shape == (2, 50, 32) for h in hs)
    assert hs_len[0].tolist() == [50, 38]  # S3PRLUpstream: round(len / 320)
    assert up.downsample_rates == [320, 320, 320]


def test_expert_outputs_and_heads_option(ckpt, tmp_path):
    import s3prl.hub as hub

    register()
    up = hub.ekd_student(ckpt=ckpt).eval()
    wavs = [torch.randn(16000), torch.randn(9600)]
    out = up(wavs)
    assert len(out["hidden_states"]) == 3
    assert torch.equal(out["last_hidden_state"], out["hidden_states"][-1])
    assert up.get_downsample_rates("hidden_states") == 320

    opts = tmp_path / "opts.yaml"
    opts.write_text(yaml.safe_dump({"include_heads": True}))
    up2 = hub.ekd_student(ckpt=ckpt, model_config=str(opts)).eval()
    out2 = up2(wavs)
    assert len(out2["hidden_states"]) == 6
    for a, b in zip(out["hidden_states"], out2["hidden_states"]):
        torch.testing.assert_close(a, b)


def test_multihead_heads_are_averaged_across_teachers(tmp_path, tiny_student_config):
    import s3prl.hub as hub

    register()
    s = EKDStudent(tiny_student_config, TargetPlan.from_scheme("multihead", {"a": 32, "b": 32})).eval()
    path = str(save_student(s, tmp_path / "m.ckpt"))
    up = hub.ekd_student_local(ckpt=path, include_heads=True).eval()
    wav = [torch.randn(8000)]
    out = up(wav)["hidden_states"]
    with torch.no_grad():
        preds = s(wav).predictions
    assert len(out) == 6
    torch.testing.assert_close(out[3], (preds[0] + preds[3]) / 2)


def test_errors_say_what_to_do(tmp_path, ckpt):
    import s3prl.hub as hub

    register()
    with pytest.raises(ValueError, match="pass -k"):
        hub.ekd_student()
    with pytest.raises(FileNotFoundError, match="nope.ckpt does not exist"):
        hub.ekd_student(ckpt=str(tmp_path / "nope.ckpt"))
    bad = tmp_path / "o.yaml"
    bad.write_text("include_head: true\n")
    with pytest.raises(ValueError, match=r"ekd_student options \(.*o\.yaml\): unknown key\(s\) \['include_head'\]"):
        hub.ekd_student(ckpt=ckpt, model_config=str(bad))


def test_concat_heads_cannot_be_hidden_states(tmp_path, tiny_student_config):
    import s3prl.hub as hub

    register()
    s = EKDStudent(tiny_student_config, TargetPlan.from_scheme("concat", {"a": 32, "b": 32}))
    path = str(save_student(s, tmp_path / "c.ckpt"))
    with pytest.raises(ValueError, match="include_heads: false"):
        hub.ekd_student(ckpt=path, include_heads=True)


@pytest.mark.slow
def test_run_downstream_trains_with_ekd_student(ckpt, tmp_path, root_dir):
    """s3prl's own runner builds our upstream and trains its `example` downstream a few steps."""
    cfg = {
        "runner": {
            "total_steps": 3,
            "gradient_clipping": 1,
            "gradient_accumulate_steps": 1,
            "log_step": 1,
            "eval_step": 1000,
            "save_step": 3,
            "max_keep": 1,
            "eval_dataloaders": ["dev"],
        },
        "optimizer": {"name": "AdamW", "lr": 1.0e-3},
        "downstream_expert": {
            "datarc": {"num_workers": 0, "train_batch_size": 2, "eval_batch_size": 2},
            "modelrc": {"input_dim": 16},
        },
    }
    cfg_path = tmp_path / "example.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    expdir = tmp_path / "exp"
    cmd = [
        sys.executable, os.path.join(root_dir, "run", "run_downstream.py"),
        "-m", "train", "-u", "ekd_student", "-k", ckpt, "-d", "example",
        "-c", str(cfg_path), "-p", str(expdir), "--device", "cpu",
    ]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    saved = torch.load(expdir / "states-3.ckpt", map_location="cpu", weights_only=False)
    assert saved["Step"] == 3
    assert saved["Args"].upstream == "ekd_student"
    assert "Featurizer" in saved and "Downstream" in saved
