"""The installed wheel works on its own: built from this checkout, installed into a fresh virtual
environment, run from a folder outside the checkout (so nothing can come from the tree).

Slow (a venv with the whole stack: uv links it from its cache; then the quick demo): marked
``slow``. The two commands: ``s3prl-ekd demo --quick`` and a 2-step ``s3prl-ekd pretrain`` with
the shipped runner config given by name, on the demo's own corpus and teachers.
"""

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _uv() -> list:
    """uv as `make setup` installs it: on PATH, or as a module of the system Python."""
    exe = shutil.which("uv")
    return [exe] if exe else [shutil.which("python3") or sys.executable, "-m", "uv"]


def _run(cmd, cwd, env=None, timeout=900):
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{cmd} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(venv python, s3prl-ekd executable, an empty folder outside the checkout)."""
    tmp = tmp_path_factory.mktemp("wheel")
    try:
        _run(_uv() + ["--version"], tmp)
    except (AssertionError, FileNotFoundError):
        pytest.skip("uv is not installed (make setup installs it)")
    # build from a copy of the tree git sees (tracked and new files, not ignored ones): the build writes build/ and *.egg-info where it runs
    src = tmp / "src"
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT, capture_output=True, check=True).stdout.split(b"\0")
    for name in filter(None, (f.decode() for f in files)):
        if (ROOT / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, src / name)
    _run(_uv() + ["build", "--wheel", "--out-dir", tmp / "dist", src], tmp)
    wheel = next((tmp / "dist").glob("s3prl_ekd-*.whl"))
    venv = tmp / "venv"
    base_python = getattr(sys, "_base_executable", sys.executable)
    _run(_uv() + ["venv", "-q", venv, "--python", base_python], tmp)
    _run(_uv() + ["pip", "install", "-q", "--python", venv / "bin" / "python", wheel], tmp, timeout=1500)
    outside = tmp / "elsewhere"
    outside.mkdir()
    return {"wheel": wheel, "python": venv / "bin" / "python", "exe": venv / "bin" / "s3prl-ekd", "cwd": outside}


def _env():
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["OMP_NUM_THREADS"] = "1"
    return env


def test_wheel_holds_the_configs_and_no_checkout_is_imported(installed):
    names = zipfile.ZipFile(installed["wheel"]).namelist()
    for kind in ("upstream_configs", "downstream_configs"):
        shipped = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / kind).rglob("*") if p.is_file())
        assert shipped and all(f"s3prl_ekd/{p}" in names for p in shipped), kind
    probe = ("import s3prl_ekd, s3prl_ekd.config.resources as r; print(s3prl_ekd.__file__); "
             "print(r.shipped_dir('upstream_configs')); print(r.shipped_dir('downstream_configs'))")
    out = _run([installed["python"], "-c", probe], installed["cwd"], _env()).stdout.split()
    assert all("site-packages" in line and str(ROOT) not in line for line in out), out


def test_help_of_every_command_and_no_import_noise(installed):
    for cmd in (["pretrain", "-h"], ["downstream", "-h"], ["demo", "-h"], ["-h"]):
        proc = _run([installed["exe"]] + cmd, installed["cwd"], _env())
        assert "usage:" in proc.stdout, cmd
        assert "set_audio_backend" not in proc.stderr and "ESPnet" not in proc.stderr + proc.stdout, (cmd, proc.stderr)


def test_quick_demo_then_two_pretraining_steps_with_a_shipped_config_name(installed):
    cwd = installed["cwd"]
    _run([installed["exe"], "demo", "--quick", "--out", "demo"], cwd, _env(), timeout=1200)
    demo = cwd / "demo"
    assert (demo / "results.md").is_file() and (demo / "results.json").is_file()

    corpus = demo / "corpus"
    teacher = demo / "teachers" / "hubert.pt"
    assert teacher.is_file() and (corpus / "len_for_bucket").is_dir()
    upstream = {
        "teachers": [{"name": "hubert", "upstream": "hubert_local", "ckpt": str(teacher)}],
        "targets": {"scheme": "single", "layers": [1, 2]},
        "student": {
            "extractor_conv_feature_layers": "[(32,10,5)] + [(32,3,2)] * 4 + [(32,2,2)] * 2",
            "encoder_layers": 2, "encoder_embed_dim": 32, "encoder_ffn_embed_dim": 64,
            "encoder_attention_heads": 4, "conv_pos": 16, "conv_pos_groups": 2,
        },
        "task": {"sequence_length": 16000},
    }
    (cwd / "tiny.yaml").write_text(yaml.safe_dump(upstream))
    datarc = "config.pretrain_expert.datarc"
    override = ",,".join([
        "config.runner.total_steps=2", "config.runner.log_step=1", "config.runner.save_step=1",
        f"{datarc}.libri_root={corpus / 'LibriSpeech'}", f"{datarc}.file_path={corpus / 'len_for_bucket'}",
        f"{datarc}.sets=['train-clean-100']", f"{datarc}.train_batch_size=2", f"{datarc}.num_workers=0",
        f"{datarc}.pin_memory=False",
    ])
    _run([installed["exe"], "pretrain", "-u", "ekd", "-c", "pretrain_runner", "-g", "tiny.yaml",
          "-n", "tiny", "-o", override], cwd, _env())
    expdir = cwd / "result" / "pretrain" / "tiny"
    assert (expdir / "states-2.ckpt").is_file()
    # s3prl copies the -c file as given: the shipped one, found by name; the run used it overridden
    assert (expdir / "config_runner.yaml").read_text() == (ROOT / "upstream_configs" / "pretrain_runner.yaml").read_text()
    from s3prl_ekd.io.checkpoint import safe_load

    state = safe_load(expdir / "states-2.ckpt")
    assert state["Step"] == 2 and state["Config"]["runner"]["total_steps"] == 2
