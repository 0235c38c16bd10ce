"""run/superb.sh: the full-scale recipe's commands (DRY_RUN=1), resumption and skipping."""

import os
import shlex
import subprocess
from argparse import Namespace

import pytest
from s3prl.utility.helper import override

STUDENT = "{exp}/pretrain/ekd_multihead/states-200000.ckpt"


def recipe(root_dir, tmp_path, **env):
    """Run the recipe; returns (exit status, printed commands as argv lists, whole output)."""
    full_env = {
        **os.environ,
        "DRY_RUN": "1",
        "EXP": str(tmp_path / "result"),
        "LIBRISPEECH": "/corpora/LibriSpeech",
        "VOXCELEB1": "/corpora/VoxCeleb1",
        "IEMOCAP": "/corpora/IEMOCAP",
        "LENGTHS": str(tmp_path / "lengths"),
        **env,
    }
    proc = subprocess.run(
        ["bash", os.path.join(root_dir, "run", "superb.sh")], env=full_env, capture_output=True, text=True, timeout=60
    )
    out = proc.stdout + proc.stderr
    cmds = [shlex.split(line[2:]) for line in proc.stdout.splitlines() if line.startswith("+ ")]
    return proc.returncode, cmds, out


def option(argv, flag):
    return argv[argv.index(flag) + 1]


def overridden(argv):
    """The config after s3prl's own ``-o`` parser applied the command's override."""
    config = {}
    override(option(argv, "-o"), Namespace(), config)
    return config


def test_syntax(root_dir):
    assert subprocess.run(["bash", "-n", os.path.join(root_dir, "run", "superb.sh")]).returncode == 0


def test_dry_run_prints_every_stage(root_dir, tmp_path):
    rc, cmds, out = recipe(root_dir, tmp_path)
    assert rc == 0, out
    exp = str(tmp_path / "result")
    student = STUDENT.format(exp=exp)
    lengths = str(tmp_path / "lengths")
    assert cmds[0] == ["s3prl-ekd", "prepare-lengths", "/corpora/LibriSpeech", "--output", lengths]

    pre = cmds[1]
    assert pre[:10] == [
        "python", "run/run_pretrain.py", "-u", "ekd", "-g", "upstream_configs/ekd_multihead.yaml",
        "-n", "ekd_multihead", "-p", f"{exp}/pretrain/ekd_multihead",
    ]
    cfg = overridden(pre)
    assert cfg["runner"]["total_steps"] == 200000
    assert cfg["pretrain_expert"]["datarc"] == {"libri_root": "/corpora/LibriSpeech", "file_path": lengths}

    downstream = [c for c in cmds if c[1] == "run/run_downstream.py"]
    trains = [c for c in downstream if option(c, "-m") == "train"]
    evals = [c for c in downstream if option(c, "-m") == "evaluate"]
    assert [(option(c, "-d"), option(c, "-c")) for c in trains] == [
        ("ctc", "downstream_configs/pr.yaml"),
        ("voxceleb1", "downstream_configs/sid.yaml"),
    ] + [("emotion", "downstream_configs/er.yaml")] * 5 + [("asr", "downstream_configs/asr.yaml")]
    for c in trains:
        assert c[:3] == ["python", "run/run_downstream.py", "-m"] and "-a" in c
        assert option(c, "-u") == "ekd_student" and option(c, "-k") == student
    pr, sid, *ers, asr = trains
    assert overridden(pr)["downstream_expert"]["corpus"] == {
        "path": "/corpora/LibriSpeech",
        "lexicon": [
            "data/libriphone/librispeech-lexicon-200k-g2p.txt",
            "data/libriphone/librispeech-lexicon-allothers-g2p.txt",
        ],
    }
    assert overridden(sid)["downstream_expert"]["datarc"] == {
        "file_path": "/corpora/VoxCeleb1", "meta_data": "/corpora/VoxCeleb1/iden_split.txt"
    }
    assert [overridden(c)["downstream_expert"]["datarc"]["test_fold"] for c in ers] == [f"fold{k}" for k in range(1, 6)]
    assert overridden(ers[0])["downstream_expert"]["datarc"]["meta_data"] == "/corpora/IEMOCAP/meta_data"
    assert overridden(asr)["downstream_expert"]["datarc"] == {"libri_root": "/corpora/LibriSpeech", "bucket_file": lengths}

    assert [(option(c, "-e"), option(c, "-t")) for c in evals] == [
        (f"{exp}/downstream/ekd_multihead_pr/dev-best.ckpt", "test"),
        (f"{exp}/downstream/ekd_multihead_sid/dev-best.ckpt", "test"),
    ] + [(f"{exp}/downstream/ekd_multihead_er_fold{k}/dev-best.ckpt", "test") for k in range(1, 6)] + [
        (f"{exp}/downstream/ekd_multihead_asr/dev-clean-best.ckpt", "test-clean"),
    ]
    assert cmds[-2:] == [
        ["s3prl-ekd", "export-submission", student, f"{exp}/submission/ekd_multihead", "--force"],
        ["s3prl-ekd", "verify-submission", f"{exp}/submission/ekd_multihead", "--ckpt", student],
    ]
    assert len(cmds) == 2 + 2 * 8 + 2
    assert not (tmp_path / "result" / "downstream" / "ekd_multihead_pr" / ".train.done").exists()


def test_many_gpus_use_torchrun(root_dir, tmp_path):
    rc, cmds, out = recipe(root_dir, tmp_path, NGPU="4", STAGES="pretrain", CONFIG="upstream_configs/ekd_average.yaml")
    assert rc == 0, out
    assert cmds[0][:8] == [
        "torchrun", "--nproc_per_node", "4", "run/run_pretrain.py", "-u", "ekd", "-g", "upstream_configs/ekd_average.yaml"
    ]
    assert option(cmds[0], "-n") == "ekd_average"


def test_finished_steps_are_skipped_and_interrupted_ones_resume(root_dir, tmp_path):
    exp = tmp_path / "result"
    pre = exp / "pretrain" / "ekd_multihead"
    pre.mkdir(parents=True)
    (pre / "states-10000.ckpt").write_bytes(b"")
    rc, cmds, out = recipe(root_dir, tmp_path, STAGES="pretrain")
    assert rc == 0, out
    assert cmds == [["python", "run/run_pretrain.py", "-e", str(pre)]]

    (pre / "states-200000.ckpt").write_bytes(b"")
    lengths = tmp_path / "lengths"
    lengths.mkdir()
    for subset in ("train-clean-100", "train-clean-360", "train-other-500", "dev-clean", "test-clean"):
        (lengths / f"{subset}.csv").write_text("")
    pr = exp / "downstream" / "ekd_multihead_pr"
    pr.mkdir(parents=True)
    (pr / ".train.done").write_text("")
    rc, cmds, out = recipe(root_dir, tmp_path, STAGES="lengths pretrain pr")
    assert rc == 0, out
    assert "skip: length tables" in out and "skip: pretraining finished" in out and "skip: training ekd_multihead_pr finished" in out
    assert cmds == [["python", "run/run_downstream.py", "-m", "evaluate", "-e", f"{pr}/dev-best.ckpt", "-t", "test"]]


def test_missing_student_stops_a_real_run(root_dir, tmp_path):
    rc, cmds, out = recipe(root_dir, tmp_path, DRY_RUN="0", STAGES="sid")
    assert rc == 1
    assert "states-200000.ckpt does not exist: run the pretrain stage first" in out
    assert cmds == []


def _key_paths(config, prefix=()):
    for k, v in config.items():
        yield prefix + (k,)
        if isinstance(v, dict):
            yield from _key_paths(v, prefix + (k,))


def test_overrides_replace_keys_the_shipped_configs_have(root_dir, tmp_path):
    """Each -o of the recipe sets a key its config already holds (no silently ignored typo)."""
    import yaml

    rc, cmds, out = recipe(root_dir, tmp_path)
    assert rc == 0, out
    checked = 0
    for c in cmds:
        if c[1:2] == ["run/run_downstream.py"] and option(c, "-m") == "train":
            path = os.path.join(root_dir, option(c, "-c"))
        elif c[1:2] == ["run/run_pretrain.py"]:
            path = os.path.join(root_dir, "upstream_configs", "pretrain_runner.yaml")
        else:
            continue
        if not os.path.isfile(path):
            continue  # that config is not in this checkout yet
        with open(path) as f:
            shipped = set(_key_paths(yaml.safe_load(f)))
        for key in _key_paths(overridden(c)):
            assert key in shipped, f"{path} has no key {'.'.join(key)} that run/superb.sh overrides"
        checked += 1
    if not checked:
        pytest.skip("no shipped config to check against in this checkout")
