"""Shipped configs by name or path (``s3prl_ekd.config.resources``), and ``-c NAME`` of the downstream command."""

import os
from pathlib import Path

import pytest
import yaml

from s3prl_ekd.config.resources import (
    DOWNSTREAM,
    UPSTREAM,
    ConfigNotFoundError,
    resolve_config,
    resolve_shipped_paths,
    shipped_dir,
    shipped_names,
)
from s3prl_ekd.superb.launch import resolve_task_config

ROOT = Path(__file__).resolve().parents[1]


def test_in_the_checkout_the_root_folders_are_the_shipped_ones():
    assert shipped_dir(UPSTREAM) == ROOT / "upstream_configs" and shipped_dir(DOWNSTREAM) == ROOT / "downstream_configs"
    assert {"ekd_average", "ekd_concat", "ekd_multihead", "pretrain_runner"} <= set(shipped_names(UPSTREAM))
    assert {"pr", "sid", "er", "asr", "pr_mini"} <= set(shipped_names(DOWNSTREAM))
    with pytest.raises(ValueError, match="unknown config kind 'configs'"):
        shipped_dir("configs")


def test_a_config_by_name_or_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # away from the checkout: names must not depend on the working folder
    expected = ROOT / "upstream_configs" / "ekd_average.yaml"
    for given in ("ekd_average", "ekd_average.yaml", "upstream_configs/ekd_average.yaml"):
        assert resolve_config(given, UPSTREAM) == expected, given
    mine = tmp_path / "ekd_average.yaml"  # a file of the user's wins over the shipped one
    mine.write_text("{}")
    assert resolve_config("ekd_average.yaml", UPSTREAM) == Path("ekd_average.yaml")
    with pytest.raises(ConfigNotFoundError, match=r"config 'other/ekd_average.yaml' is neither a file nor a shipped upstream config"):
        resolve_config("other/ekd_average.yaml", UPSTREAM)  # a path elsewhere is no name
    with pytest.raises(ConfigNotFoundError, match=r"'pr_tiny' is neither a file nor a shipped downstream config: give a path, or one of asr, "):
        resolve_config("pr_tiny", DOWNSTREAM)


def test_shipped_file_paths_inside_configs_resolve_anywhere(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = {"a": {"vocab_file": "downstream_configs/vocab/phoneme.txt"}, "b": ["downstream_configs/dict/char.dict", 3],
              "c": "downstream_configs/vocab/missing.txt", "d": "some/other.txt"}
    out = resolve_shipped_paths(config)
    assert out["a"]["vocab_file"] == str(ROOT / "downstream_configs" / "vocab" / "phoneme.txt")
    assert out["b"] == [str(ROOT / "downstream_configs" / "dict" / "char.dict"), 3]
    assert out["c"] == "downstream_configs/vocab/missing.txt" and out["d"] == "some/other.txt"  # untouched
    mine = tmp_path / "downstream_configs" / "vocab" / "phoneme.txt"  # a user's own file of that path wins
    mine.parent.mkdir(parents=True)
    mine.write_text("a\n")
    assert resolve_shipped_paths(config)["a"]["vocab_file"] == str(mine)


def test_downstream_c_takes_a_task_name_and_gets_a_resolved_copy(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = resolve_task_config(["-m", "train", "-d", "ctc", "-c", "pr_mini", "-n", "x"])
    assert argv[:4] == ["-m", "train", "-d", "ctc"] and argv[-2:] == ["-n", "x"]
    with open(argv[5]) as f:
        copy = yaml.safe_load(f)
    with open(ROOT / "downstream_configs" / "pr_mini.yaml") as f:
        shipped = yaml.safe_load(f)
    vocab = copy["downstream_expert"]["text"]["vocab_file"]
    assert os.path.isabs(vocab) and os.path.isfile(vocab)
    copy["downstream_expert"]["text"]["vocab_file"] = shipped["downstream_expert"]["text"]["vocab_file"]
    assert copy == shipped  # nothing else changed
    assert resolve_task_config(["-c=sid_mini"]) == [f"-c={ROOT / 'downstream_configs' / 'sid_mini.yaml'}"]  # nothing to resolve
    with pytest.raises(SystemExit, match="-c: config 'nope' is neither a file nor a shipped downstream config"):
        resolve_task_config(["-c", "nope"])
