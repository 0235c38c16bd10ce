"""The SUPERB submission folder: export, the folder's own checks, and the fresh-process verifier."""

import importlib.util
import os
import subprocess
import sys

import pytest
import torch

from s3prl_ekd import cli
from s3prl_ekd.distill.student import EKDStudent
from s3prl_ekd.distill.student_checkpoint import save_student
from s3prl_ekd.io.checkpoint import CheckpointError
from s3prl_ekd.superb.submission.build import REQUIRED_FILES, SubmissionError, export_submission
from s3prl_ekd.superb.submission.verify import verify_submission
from s3prl_ekd.upstream.ekd_student.hubconf import ekd_student

pytestmark = pytest.mark.slow  # end to end: `pytest -m "not slow"` leaves it out


@pytest.fixture
def student(tiny_student_config):
    return EKDStudent(tiny_student_config, _plan("average"))


def _plan(scheme):
    from s3prl_ekd.distill.targets import TargetPlan

    return TargetPlan.from_scheme(scheme, {"a": 32, "b": 32})


@pytest.fixture
def ckpt(tmp_path, student):
    teachers = [  # as TeacherEnsemble.describe() writes them
        {"name": "a", "upstream": "hubert_base", "ckpt": None, "dim": 32, "num_layers": 12, "weight": 1.0},
        {"name": "b", "upstream": "wavlm_local", "ckpt": "/models/wavlm.pt", "dim": 32, "num_layers": 12, "weight": 1.0},
    ]
    return str(save_student(student, tmp_path / "student.ckpt", step=1234, teachers=teachers))


def _load_module(name, path):
    """Import one of the folder's files under a unique name, without touching sys.path."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_export_writes_the_template_folder_and_the_verifier_passes(tmp_path, ckpt, student, root_dir):
    out = export_submission(ckpt, tmp_path / "sub")
    assert sorted(os.listdir(out)) == sorted(REQUIRED_FILES)
    model = torch.load(out / "model.pt", weights_only=True)  # plain data
    assert model["heads"] is None and not any(k.startswith("heads.") for k in model["state_dict"])
    for name in ("expert.py", "cli.py", "hubconf.py"):
        assert "s3prl_ekd" not in (out / name).read_text()
    assert "from s3prl.upstream.distiller.module import" in (out / "expert.py").read_text()
    reqs = (out / "requirements.txt").read_text()
    assert "s3prl==0.4.18" in reqs and "\ntorch" in reqs
    readme = (out / "README.md").read_text()
    n = student.num_parameters(with_heads=False)
    assert n == sum(v.numel() for v in model["state_dict"].values() if v.dtype.is_floating_point)
    assert f"**Parameters:** {n:,}" in readme
    assert "**Teachers:** a (hubert_base), b (wavlm_local, wavlm.pt)" in readme and "**Scheme:** average" in readme
    assert "**Pretraining steps:** 1234" in readme and "| avg/L12 | mean | a layer 12, b layer 12 | 32 |" in readme

    proc = subprocess.run(
        [sys.executable, "-m", "s3prl_ekd.cli", "verify-submission", str(out), "--ckpt", ckpt],
        cwd=root_dir, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "validate passed" in proc.stdout
    assert "SID: 3 x (3, 184, 32), downsample rate 320" in proc.stdout  # 3.7 s = 59200 samples -> 184 frames
    assert "max |diff| = 0.0" in proc.stdout and "[32000, 28800, 59200]" in proc.stdout


def test_tampered_folder_fails_verification(tmp_path, ckpt):
    out = export_submission(ckpt, tmp_path / "sub")
    model = torch.load(out / "model.pt", weights_only=True)
    key = "encoder.layers.1.fc2.weight"
    model["state_dict"][key] = model["state_dict"][key] + 1e-3
    torch.save(model, out / "model.pt")
    with pytest.raises(SubmissionError, match=r"hidden state 2 of the batch of lengths \[32000, 28800, 59200\] differs.*max \|diff\|.*export it again"):
        verify_submission(out, ckpt)

    # an expert.py that leans on s3prl_ekd is refused in the fresh process
    out2 = export_submission(ckpt, tmp_path / "sub2")
    (out2 / "expert.py").write_text("import s3prl_ekd\n" + (out2 / "expert.py").read_text())
    with pytest.raises(SubmissionError, match="does not load in a fresh process|validate failed(.|\n)*imported s3prl_ekd.*self-contained"):
        verify_submission(out2, ckpt)

    (out2 / "LICENSE").unlink()
    with pytest.raises(SubmissionError, match="lacks LICENSE"):
        verify_submission(out2, ckpt)


def test_exporting_a_non_student_file_names_it(tmp_path, ckpt, capsys):
    other = tmp_path / "teacher.pt"
    torch.save({"model_weight": {}, "model_cfg": {}}, other)
    with pytest.raises(CheckpointError, match=r"teacher\.pt is not an s3prl-ekd student checkpoint"):
        export_submission(other, tmp_path / "x")
    assert cli.main(["export-submission", str(other), str(tmp_path / "y")]) == 1
    assert "teacher.pt is not an s3prl-ekd student checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "y").exists()

    assert cli.main(["export-submission", ckpt, str(tmp_path / "sub")]) == 0
    # the tiny student (conftest): 42,160 parameters, 8,192 of them its positional conv (32 x 16 x 16)
    assert "42,160 parameters without heads, average of a (hubert_base), b (wavlm_local, wavlm.pt), step 1234" in capsys.readouterr().out
    with pytest.raises(SubmissionError, match="sub is not empty.*--force"):
        export_submission(ckpt, tmp_path / "sub")


def test_kept_heads_match_the_expert_with_include_heads(tmp_path, tiny_student_config):
    s = EKDStudent(tiny_student_config, _plan("multihead"))
    path = str(save_student(s, tmp_path / "m.ckpt"))
    out = export_submission(path, tmp_path / "sub", include_heads=True)
    expert = _load_module("ekd_submission_expert_heads", out / "expert.py")
    theirs = expert.UpstreamExpert(ckpt=str(out / "model.pt"))
    ours = ekd_student(ckpt=path, include_heads=True).eval()
    wavs = [torch.randn(16000), torch.randn(7000)]
    with torch.no_grad():
        a, b = ours(wavs)["hidden_states"], theirs(wavs)["hidden_states"]
    assert len(a) == len(b) == 6
    for x, y in zip(a, b):
        assert torch.equal(x, y)

    # the folder's hubconf entry, as torch.hub loads a local folder (it imports `expert` top-level)
    try:
        hubbed = torch.hub.load(str(out), "ekd_student_submission", source="local")
        with torch.no_grad():
            assert torch.equal(hubbed(wavs)["hidden_states"][5], a[5])
    finally:
        for name in ("hubconf", "expert"):
            sys.modules.pop(name, None)
        sys.path[:] = [p for p in sys.path if p != str(out)]

    s2 = EKDStudent(tiny_student_config, _plan("concat"))
    path2 = str(save_student(s2, tmp_path / "c.ckpt"))
    with pytest.raises(SubmissionError, match=r"c\.ckpt: include_heads needs"):
        export_submission(path2, tmp_path / "sub2", include_heads=True)


def test_folder_validate_rejects_what_the_template_rejects(tmp_path, ckpt):
    out = export_submission(ckpt, tmp_path / "sub")
    folder_cli = _load_module("ekd_submission_cli", out / "cli.py")
    wavs = [torch.randn(int(16000 * s)) for s in folder_cli.WAV_SECONDS]

    class Upstream:
        def __init__(self, rate, states):
            self.rate, self.states = rate, states

        def get_downsample_rates(self, key):
            return self.rate

        def __call__(self, wavs):
            return {"hidden_states": self.states, "PR": self.states[:1]}

    good = [torch.zeros(3, 185, 4)] * 2
    assert len(folder_cli.check_outputs(Upstream(320, good), wavs)) == len(folder_cli.TASKS)
    with pytest.raises(folder_cli.ValidationError, match="PR: downsample rate 160 predicts 370 frames for 59200 samples"):
        folder_cli.check_outputs(Upstream(160, good), wavs)
    with pytest.raises(folder_cli.ValidationError, match="PR: get_downsample_rates must return an int, got float"):
        folder_cli.check_outputs(Upstream(320.0, good), wavs)
    with pytest.raises(folder_cli.ValidationError, match="feature 1 has shape"):
        folder_cli.check_outputs(Upstream(320, [torch.zeros(3, 185, 4), torch.zeros(3, 185, 5)]), wavs)
    with pytest.raises(folder_cli.ValidationError, match="3-D tensor"):
        folder_cli.check_outputs(Upstream(320, [torch.zeros(185, 4)]), wavs)


def test_export_reads_a_pretraining_checkpoint(tmp_path, student):
    """s3prl's Runner checkpoint (Optimizer, Args, runner Config) with the student merged in."""
    from argparse import Namespace

    from s3prl_ekd.distill.student_checkpoint import student_state

    state = student_state(student, step=200000, teachers=[{"name": "hubert", "upstream": "hubert_base"}])
    state["Config"].update(runner={"total_steps": 200000}, optimizer={"lr": 2e-4})
    state.update(Optimizer={"state": {}, "param_groups": []}, Args=Namespace(upstream="ekd"), Epoch=3)
    path = tmp_path / "states-200000.ckpt"
    torch.save(state, path)
    out = export_submission(path, tmp_path / "sub")
    model = torch.load(out / "model.pt", weights_only=True)
    assert model["info"]["step"] == 200000 and model["info"]["teachers"] == ["hubert (hubert_base)"]
    assert set(model["state_dict"]) == {k for k in student.state_dict() if not k.startswith("heads.")}
    assert "**Pretraining steps:** 200000" in (out / "README.md").read_text()


def test_force_export_never_writes_through_a_symlink(ckpt, tmp_path):
    outside = tmp_path / "outside.py"
    outside.write_text("precious\n")
    out = tmp_path / "sub"
    out.mkdir()
    (out / "expert.py").symlink_to(outside)
    (out / "model.pt").symlink_to(outside)
    export_submission(ckpt, out, force=True)
    assert outside.read_text() == "precious\n"
    assert not (out / "expert.py").is_symlink() and not (out / "model.pt").is_symlink()
    assert "UpstreamExpert" in (out / "expert.py").read_text()


def test_submission_files_respect_the_umask(ckpt, tmp_path):
    old = os.umask(0o022)
    try:
        out = export_submission(ckpt, tmp_path / "sub")
    finally:
        os.umask(old)
    assert {(out / n).stat().st_mode & 0o777 for n in ("model.pt", "expert.py", "README.md")} == {0o644}
