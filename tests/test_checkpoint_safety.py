"""Untrusted checkpoints: damaged, foreign or code-running files are refused, with a clear error."""

import ast
import os
import pathlib
import pickle
import shutil

import pytest
import torch

from s3prl_ekd.distill.student import EKDStudent
from s3prl_ekd.distill.student_checkpoint import load_student, save_student, student_state
from s3prl_ekd.distill.targets import TargetPlan
from s3prl_ekd.io.checkpoint import CheckpointError, safe_load
from s3prl_ekd.upstream.ekd_student import hubconf as hub

ROOT = pathlib.Path(__file__).resolve().parents[1]


class Payload:
    """Unpickling this calls ``Path.touch(marker)``: what a hostile checkpoint would do, harmlessly."""

    def __init__(self, marker):
        self.marker = pathlib.Path(marker)

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


@pytest.fixture
def student(tiny_student_config):
    return EKDStudent(tiny_student_config, TargetPlan.from_scheme("average", {"a": 32})).eval()


def _hostile_files(tmp_path, student, marker):
    """The same code-running student checkpoint in torch's zip format, its legacy format, raw pickle."""
    state = student_state(student)
    state["Config"]["teachers"] = [Payload(marker)]
    zip_ckpt = tmp_path / "zip.ckpt"
    torch.save(state, zip_ckpt)
    legacy = tmp_path / "legacy.ckpt"
    torch.save(state, legacy, _use_new_zipfile_serialization=False)
    raw = tmp_path / "raw.pkl"
    raw.write_bytes(pickle.dumps({"format": "s3prl-ekd/student", "x": Payload(marker)}, protocol=2))
    return [zip_ckpt, legacy, raw]


def test_hostile_pickle_is_refused_and_never_runs(tmp_path, student):
    marker = tmp_path / "MARKER"
    files = _hostile_files(tmp_path, student, marker)
    # the payload is live: an unsafe load runs it
    witness = tmp_path / "witness"
    witness.mkdir()
    pickle.loads(pickle.dumps(Payload(witness / "ran")))
    assert (witness / "ran").exists()

    for path in files:
        with pytest.raises(CheckpointError, match=r"not plain data \(.*\) and was refused unread"):
            load_student(path)
        with pytest.raises(CheckpointError, match=str(path.name)):
            safe_load(path)
        with pytest.raises(CheckpointError, match="refused"):
            hub.ekd_student_local(str(path))
    assert not marker.exists()


@pytest.mark.parametrize("keep", [0.0, 0.1, 0.5, 0.9, 0.999])
def test_truncated_checkpoint_is_refused(tmp_path, student, keep):
    data = save_student(student, tmp_path / "good.ckpt").read_bytes()
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(data[: max(1, int(len(data) * keep))])
    with pytest.raises(CheckpointError, match=r"cut\.ckpt .*truncated or damaged"):
        load_student(cut)


def test_garbage_and_folders_are_refused(tmp_path):
    (tmp_path / "junk.ckpt").write_bytes(bytes(range(256)) * 40)
    with pytest.raises(CheckpointError, match="truncated or damaged"):
        load_student(tmp_path / "junk.ckpt")
    (tmp_path / "page.ckpt").write_text("<html><body>404 Not Found</body></html>")
    with pytest.raises(CheckpointError, match="truncated or damaged"):
        load_student(tmp_path / "page.ckpt")
    with pytest.raises(CheckpointError, match="is a folder"):
        load_student(tmp_path)


@pytest.mark.parametrize(
    "content, hint",
    [
        ({"Config": {"distiller": {}}, "Distiller": {}}, "distiller_local"),
        ({"model_weight": {}, "model_cfg": {}, "task_cfg": {}}, "hubert_local"),
        ({"cfg": {}, "model": {}}, "hubert_local"),
        (torch.zeros(3), "holds a Tensor"),
        ([1, 2], "holds a list"),
    ],
    ids=["s3prl-distiller", "s3prl-hubert", "fairseq", "tensor", "list"],
)
def test_checkpoint_of_another_model_is_refused(tmp_path, content, hint):
    p = tmp_path / "other.ckpt"
    torch.save(content, p)
    with pytest.raises(CheckpointError, match=f"not .*student checkpoint.*{hint}"):
        load_student(p)


def test_damaged_student_content_is_refused(tmp_path, student):
    def write(mutate):
        state = student_state(student)
        mutate(state)
        torch.save(state, tmp_path / "s.ckpt")
        return tmp_path / "s.ckpt"

    with pytest.raises(CheckpointError, match="student config or target plan is invalid.*bogus"):
        load_student(write(lambda s: s["Config"]["student"].update(bogus=1)))
    with pytest.raises(CheckpointError, match="not a state dict of tensors"):
        load_student(write(lambda s: s.update(Student={"x": 1})))
    # a config claiming a far bigger model than the weights: refused before anything is built
    with pytest.raises(CheckpointError, match="refused before building"):
        load_student(write(lambda s: s["Config"]["student"].update(encoder_embed_dim=4096, encoder_ffn_embed_dim=16384)))
    with pytest.raises(CheckpointError, match="weights do not fit"):
        load_student(write(lambda s: s["Config"]["student"].update(encoder_layers=3)))
    with pytest.raises(CheckpointError, match="format version 99.*upgrade"):
        load_student(write(lambda s: s.update(format_version=99)))


@pytest.fixture
def fake_download(tmp_path, monkeypatch):
    """s3prl's downloader replaced by a copy from a dict of URL -> local file into a cache folder."""
    import s3prl.util.download as dl

    served, cache = {}, tmp_path / "cache"
    cache.mkdir()

    def urls_to_filepaths(url, refresh=False, download=True):
        dst = cache / url.rsplit("/", 1)[-1]
        if refresh or not dst.exists():
            shutil.copy(served[url], dst)
        return str(dst)

    monkeypatch.setattr(dl, "_urls_to_filepaths", urls_to_filepaths)
    return served, cache


def test_url_download_is_verified_and_bad_files_leave_the_cache(tmp_path, student, fake_download):
    served, cache = fake_download
    good = save_student(student, tmp_path / "good.ckpt")
    served["https://example.org/good.ckpt"] = good
    up = hub.ekd_student("https://example.org/good.ckpt")
    assert len(up(torch.randn(1, 800).unbind(0))["hidden_states"]) == 3

    # a cut connection: half a file; an error page; a hostile pickle; another model's checkpoint
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(good.read_bytes()[:3000])
    marker = tmp_path / "MARKER"
    served["https://example.org/cut.ckpt"] = cut
    served["https://example.org/hostile.ckpt"] = _hostile_files(tmp_path, student, marker)[0]
    other = tmp_path / "distiller.ckpt"
    torch.save({"Config": {}, "Distiller": {}}, other)
    served["https://example.org/distiller.ckpt"] = other
    for name, why in [("cut", "truncated"), ("hostile", "not plain data"), ("distiller", "distiller_local")]:
        url = f"https://example.org/{name}.ckpt"
        with pytest.raises(CheckpointError, match=f"downloaded from {url} was refused.*{why}"):
            hub.ekd_student_url(url)
        assert not (cache / f"{name}.ckpt").exists()  # the next run downloads again
    assert not marker.exists()

    import hashlib

    digest = hashlib.sha256(good.read_bytes()).hexdigest()
    hub.ekd_student_url("https://example.org/good.ckpt", sha256=digest.upper())
    with pytest.raises(CheckpointError, match="sha256 is"):
        hub.ekd_student_url("https://example.org/good.ckpt", sha256="0" * 64)
    for prefix in ("", digest[:1], digest[:16], digest + "0"):  # a prefix would match anything
        with pytest.raises(ValueError, match=r"sha256 must be the full digest, 64 hex digits"):
            hub.ekd_student_url("https://example.org/good.ckpt", sha256=prefix)


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_checkpoints_respect_the_umask(tmp_path, student, umask):
    old = os.umask(umask)
    try:
        path = save_student(student, tmp_path / "s.ckpt")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def _calls(tree, module, name):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == name:
            if isinstance(node.func.value, ast.Name) and node.func.value.id == module:
                yield node


def test_every_loader_of_ours_is_safe():
    """No code of ours unpickles anything but plain data: the one rule a static scan can enforce."""
    problems = []
    for path in sorted((ROOT / "s3prl_ekd").rglob("*.py")) + sorted((ROOT / "run").rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        where = lambda n: f"{path.relative_to(ROOT)}:{n.lineno}"  # noqa: E731
        for call in _calls(tree, "torch", "load"):
            kw = {k.arg: k.value for k in call.keywords}
            wo = kw.get("weights_only")
            if not (isinstance(wo, ast.Constant) and wo.value is True):
                problems.append(f"{where(call)}: torch.load without weights_only=True (use checkpoint.safe_load)")
        for name in ("load", "loads", "Unpickler"):
            problems += [f"{where(c)}: pickle.{name} runs code from files" for c in _calls(tree, "pickle", name)]
        for call in _calls(tree, "yaml", "load"):
            problems.append(f"{where(call)}: yaml.load (use yaml.safe_load)")
        for call in _calls(tree, "np", "load"):
            if any(k.arg == "allow_pickle" for k in call.keywords):
                problems.append(f"{where(call)}: np.load with allow_pickle")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("name, upstream", [("hubert", "hubert_local"), ("wavlm", "wavlm_local"), ("hubert", "fairseq")])
def test_teacher_checkpoints_hostile_or_cut_are_refused_naming_the_teacher(tmp_path, tiny_teachers, name, upstream):
    from s3prl_ekd.teachers.ensemble import TeacherEnsemble
    from s3prl_ekd.teachers.spec import TeacherError

    marker = tmp_path / "MARKER"
    state = torch.load(tiny_teachers[name], weights_only=True)
    state["extra"] = Payload(marker)
    hostile = tmp_path / "hostile.pt"
    torch.save(state, hostile)
    with pytest.raises((TeacherError, CheckpointError), match=r"not plain data|refused unread") as e:
        TeacherEnsemble([{"name": "t", "upstream": upstream, "ckpt": str(hostile)}])
    assert "weights_only` set to `False`" not in str(e.value)  # never advise the unsafe way
    assert not marker.exists()

    data = pathlib.Path(tiny_teachers[name]).read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises((TeacherError, CheckpointError), match=r"cut\.pt .*truncated or damaged"):
        TeacherEnsemble([{"name": "t", "upstream": upstream, "ckpt": str(cut)}])


def test_teachers_refuse_to_load_when_torch_safety_is_switched_off(tiny_teachers, monkeypatch):
    from s3prl_ekd.teachers.ensemble import TeacherEnsemble
    from s3prl_ekd.teachers.spec import TeacherError

    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    with pytest.raises(TeacherError, match="teacher 't': TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD is set.*unset TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"):
        TeacherEnsemble([{"name": "t", "upstream": "hubert_local", "ckpt": tiny_teachers["hubert"]}])


def _rewrite_zip(src, dst, record_suffix, new_bytes=None, extra=None, compress=False):
    """A copy of torch zip checkpoint ``src`` with one record replaced (and maybe one added)."""
    import zipfile

    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED) as out:
        for name in zin.namelist():
            data = zin.read(name)
            if name.endswith(record_suffix) and new_bytes is not None:
                data = new_bytes(data)
            out.writestr(name, data)
        if extra:
            out.writestr(zin.namelist()[0].split("/")[0] + "/extra", extra)
    return dst


def test_short_tensor_record_is_refused_before_loading(tmp_path, student):
    good = save_student(student, tmp_path / "good.ckpt")
    short = _rewrite_zip(good, tmp_path / "short.ckpt", "/data/0", lambda b: b[: len(b) // 4])
    with pytest.raises(CheckpointError, match=r"short\.ckpt is not what it claims: tensor record data/0 holds \d+ bytes but .* claims"):
        load_student(short)
    legacy = tmp_path / "legacy.ckpt"
    torch.save(student_state(student), legacy, _use_new_zipfile_serialization=False)
    cut = tmp_path / "legacy_cut.ckpt"
    cut.write_bytes(legacy.read_bytes()[: legacy.stat().st_size // 3])  # the pickle (at the start) kept
    with pytest.raises(CheckpointError, match=r"legacy_cut\.ckpt is not what it claims: its tensors claim"):
        load_student(cut)


def test_zero_strides_claiming_a_huge_model_are_refused_before_building(tmp_path, student, monkeypatch):
    built = []
    monkeypatch.setattr(EKDStudent, "__init__", lambda self, *a, **k: built.append(1) or (_ for _ in ()).throw(AssertionError("built")))
    state = student_state(student)
    state["Config"]["student"].update(encoder_embed_dim=1024, encoder_ffn_embed_dim=4096, encoder_layers=24)
    state["Student"]["huge"] = torch.zeros(1).expand(300_000_000)  # 4 bytes on disk
    path = tmp_path / "stride0.ckpt"
    torch.save(state, path)
    assert path.stat().st_size < 1_000_000
    with pytest.raises(CheckpointError, match=r"stride0\.ckpt is not what it claims: a tensor of shape \(300000000,\).*zero or overlapping strides"):
        load_student(path)
    assert not built


def test_expanding_zip_record_is_refused(tmp_path, student):
    good = save_student(student, tmp_path / "good.ckpt")
    bomb = _rewrite_zip(good, tmp_path / "bomb.ckpt", "", extra=b"\0" * 50_000_000, compress=True)
    assert bomb.stat().st_size < 2_000_000
    with pytest.raises(CheckpointError, match=r"bomb\.ckpt is not what it claims: its zip records expand to [\d,]+ bytes"):
        safe_load(bomb)


def test_teacher_with_a_short_record_is_refused_naming_it(tmp_path, tiny_teachers):
    from s3prl_ekd.teachers.ensemble import TeacherEnsemble
    from s3prl_ekd.teachers.spec import TeacherError

    short = _rewrite_zip(tiny_teachers["hubert"], tmp_path / "short_teacher.pt", "/data/3", lambda b: b[:8])
    with pytest.raises(TeacherError, match=r"teacher 't'.*short_teacher\.pt is not what it claims: tensor record data/3"):
        TeacherEnsemble([{"name": "t", "upstream": "hubert_local", "ckpt": str(short)}])
