"""export-s3prl: the student in s3prl's distiller format, loaded by vanilla s3prl without s3prl-ekd."""

import os
import subprocess
import sys

import pytest
import torch

from s3prl_ekd import cli
from s3prl_ekd.distill.student import EKDStudent
from s3prl_ekd.distill.student_checkpoint import save_student
from s3prl_ekd.distill.targets import TargetPlan
from s3prl_ekd.export.s3prl_distiller import DistillerExportError, check_distiller_fit
from s3prl_ekd.upstream.ekd_student.hubconf import ekd_student

pytestmark = pytest.mark.slow  # end to end: `pytest -m "not slow"` leaves it out

PROBE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "export_probe.py")
# Another process (one thread there) sums in another order: float32 rounding stays far below 1e-4.
TOL = dict(atol=1e-4, rtol=1e-4)


def _student(cfg, scheme, teachers):
    student = EKDStudent(cfg, TargetPlan.from_scheme(scheme, teachers))
    with torch.no_grad():  # away from the init's ones and zeros, so every weight counts
        for p in student.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return student.eval()


def test_vanilla_s3prl_distiller_local_loads_it_with_the_students_features(tmp_path, tiny_student_config, root_dir):
    ckpt = save_student(_student(tiny_student_config, "average", {"a": 32, "b": 32}), tmp_path / "s.ckpt")
    out = tmp_path / "distiller.ckpt"
    assert cli.main(["export-s3prl", str(ckpt), str(out)]) == 0
    assert cli.main(["export-s3prl", str(ckpt), str(out)]) == 1  # no overwrite without --force

    wavs = [torch.randn(16000), torch.randn(9000)]
    torch.save(wavs, tmp_path / "waves.pt")
    proc = subprocess.run([sys.executable, "-I", PROBE, "distiller", str(out), str(tmp_path / "waves.pt"),
                           str(tmp_path / "res.pt")], cwd=root_dir, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = torch.load(tmp_path / "res.pt", weights_only=True)
    assert res["imported"] == ["s3prl"] and res["rate"] == 320

    # s3prl's distiller lists [projection, layer 1, layer 2, head 1..3]: ekd_student with include_heads
    upstream = ekd_student(str(ckpt), include_heads=True).eval()
    for wav, theirs in zip(wavs, res["alone"]):
        with torch.no_grad():
            ours = [h[0] for h in upstream([wav])["hidden_states"]]
        assert len(theirs) == len(ours) == 6
        for a, b in zip(theirs, ours):
            torch.testing.assert_close(a, b, **TOL)
    # what docs/export.md says of padded batches: the longest utterance keeps its features, a
    # shorter one's change (s3prl's distiller runs the conv extractor on the padded batch)
    t = res["alone"][1][2].shape[0]
    assert (res["padded"][2][0] - res["alone"][0][2]).abs().max() < 1e-4
    assert (res["padded"][2][1, :t] - res["alone"][1][2]).abs().max() > 0.1


def test_plans_the_distiller_cannot_hold_are_refused(tmp_path, tiny_student_config, capsys):
    multi = save_student(_student(tiny_student_config, "multihead", {"a": 32, "b": 32}), tmp_path / "m.ckpt")
    assert cli.main(["export-s3prl", str(multi), str(tmp_path / "m_out.ckpt")]) == 1
    assert "this plan (multihead) has 2 head groups" in capsys.readouterr().err
    assert not (tmp_path / "m_out.ckpt").exists()
    with pytest.raises(DistillerExportError, match=r"this plan \(concat\) has head dims \[64\], the encoder 32"):
        check_distiller_fit(EKDStudent(tiny_student_config, TargetPlan.from_scheme("concat", {"a": 32, "b": 32})))
    rate160 = {**tiny_student_config, "extractor_conv_feature_layers": "[(32,10,5)] + [(32,3,2)] * 3 + [(32,2,2)] * 2"}
    with pytest.raises(DistillerExportError, match="give 160 samples a frame but s3prl's distiller expert reports 320"):
        check_distiller_fit(EKDStudent(rate160, TargetPlan.from_scheme("single", {"a": 32})))
