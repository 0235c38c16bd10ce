"""The glue that runs s3prl's run_pretrain with ``-u ekd``."""

import os
import sys

import pytest
import torch
from pretrain_helpers import tiny_runner_config, tiny_upstream_config, write_yaml

from s3prl_ekd.config.resources import shipped_dir
from s3prl_ekd.pretrain import launch
from s3prl_ekd.s3prl_compat import pretrain_runner


def test_s3prl_sees_ekd_among_its_pretrain_experts():
    import importlib

    with pretrain_runner.patched() as run_pretrain:
        assert run_pretrain.os.listdir("pretrain/") == ["ekd"]
        assert run_pretrain.os.path is os.path  # everything else is the real os
        expert_module = importlib.import_module("pretrain.ekd.pretrain_expert")  # what s3prl's Runner imports
        from s3prl_ekd.pretrain.ekd import pretrain_expert

        assert expert_module is pretrain_expert
    from s3prl import optimizers, schedulers

    assert hasattr(optimizers, "get_EKDAdamW") and hasattr(schedulers, "get_EKDLinearWarmup")
    assert run_pretrain.os is os  # the stand-in is gone after the block


def test_s3prl_runner_saves_atomically(tmp_path):
    from s3prl_ekd.io.checkpoint import safe_load

    with pretrain_runner.patched():
        import s3prl.pretrain.runner as runner_module

        assert runner_module.torch.nn is torch.nn  # the rest of torch as it is
        runner_module.torch.save({"Step": 3}, str(tmp_path / "states-3.ckpt"))
    assert sorted(os.listdir(tmp_path)) == ["states-3.ckpt"] and safe_load(tmp_path / "states-3.ckpt") == {"Step": 3}
    assert runner_module.torch is torch


def test_module_aliases_are_removed_after_the_block(monkeypatch):
    generic = ("pretrain", "utility", "optimizers", "schedulers", "pretrain.ekd.pretrain_expert")
    for name in generic:  # whatever another test's s3prl code left (restored after this test)
        monkeypatch.delitem(sys.modules, name, raising=False)
    with pretrain_runner.module_aliases():
        import s3prl.optimizers

        assert sys.modules["optimizers"] is s3prl.optimizers
        assert [name for name in generic if name in sys.modules] == list(generic)
    assert not [name for name in generic if name in sys.modules]


def test_defaults_for_flags_s3prl_resolves_inside_its_folder(tmp_path):
    mine = tmp_path / "x.yaml"
    mine.write_text("teachers: []\n")
    argv = launch.with_defaults(["-u", "ekd", "-g", str(mine), "-n", "exp", "--device", "cuda"])
    assert argv[:5] == ["-u", "ekd", "-g", str(mine), "-n"]  # a path stays as given
    assert argv[-2:] == ["-c", str(launch.DEFAULT_RUNNER_CONFIG)] and os.path.isfile(argv[-1])
    assert launch.with_defaults(["-e", "states-3.ckpt", "--device", "cpu"]) == ["-e", "states-3.ckpt", "--device", "cpu"]
    with pytest.raises(SystemExit, match=r"needs an upstream config: -g PATH or the name of a shipped one \(.*ekd_multihead"):
        launch.with_defaults(["-u", "ekd", "-n", "exp"])
    assert launch.with_defaults(["-h"]) == ["-h"]  # s3prl's parser prints the usage


def test_shipped_config_names_for_g_and_c():
    argv = launch.with_defaults(["-u", "ekd", "-g", "ekd_average", "-c=pretrain_runner", "--device", "cpu"])
    assert argv[3] == str(shipped_dir("upstream_configs") / "ekd_average.yaml") and os.path.isfile(argv[3])
    assert argv[4] == f"-c={launch.DEFAULT_RUNNER_CONFIG}"
    with pytest.raises(SystemExit, match=r"-g: config 'ekd_avg' is neither a file nor a shipped upstream config: .*ekd_average, "):
        launch.with_defaults(["-u", "ekd", "-g", "ekd_avg"])


def test_unknown_runner_key_stops_before_training(tiny_librispeech, tiny_teachers, tmp_path, monkeypatch):
    runner = tiny_runner_config(tiny_librispeech)
    runner["runner"]["warmup"] = 10
    teachers = [{"name": "hubert", "upstream": "hubert_local", "ckpt": tiny_teachers["hubert"]}]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["run_pretrain.py"])
    args = ["-u", "ekd", "-c", write_yaml(runner, tmp_path / "r.yaml"),
            "-g", write_yaml(tiny_upstream_config(teachers), tmp_path / "u.yaml"), "-n", "bad"]
    with pytest.raises(SystemExit, match=r"unknown key\(s\) runner.warmup"):
        launch.main(args)


def test_distributed_launch_is_detected(monkeypatch):
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert not launch.is_distributed_launch()
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert launch.is_distributed_launch()


@pytest.mark.slow
def test_a_run_in_process_leaves_no_aliases_and_restores_argv(tiny_librispeech, tiny_teachers, tmp_path, monkeypatch):
    """s3prl's run_pretrain needs generic top-level names (``pretrain``, ``utility``, ...) and reads
    ``sys.argv``: both are the run's only. ``check_some_step_trained`` runs right after the run, so
    what it sees is what ``launch.main`` leaves (``run_in_process`` restores ``sys.argv`` itself too)."""
    from pretrain_helpers import run_in_process

    generic = ("pretrain", "pretrain.runner", "utility", "utility.helper", "optimizers", "schedulers", "pretrain.ekd")
    seen = {}
    check = launch.check_some_step_trained

    def spy():
        seen.update(argv=list(sys.argv), aliases=[n for n in generic if n in sys.modules])
        check()

    monkeypatch.setattr(launch, "check_some_step_trained", spy)
    for name in generic:  # whatever another test's s3prl code left (restored after this test)
        monkeypatch.delitem(sys.modules, name, raising=False)
    teachers = [{"name": "hubert", "upstream": "hubert_local", "ckpt": tiny_teachers["hubert"]}]
    runner = write_yaml(tiny_runner_config(tiny_librispeech, total_steps=2, save_step=1), tmp_path / "r.yaml")
    upstream = write_yaml(tiny_upstream_config(teachers), tmp_path / "u.yaml")
    run_in_process(["-u", "ekd", "-c", runner, "-g", upstream, "-n", "scoped"], str(tmp_path))
    assert os.path.isfile(tmp_path / "result" / "pretrain" / "scoped" / "states-2.ckpt")  # it did run
    assert seen == {"argv": ["run_pretrain.py"], "aliases": []}
    assert not [n for n in generic if n in sys.modules]
    import s3prl.pretrain.runner as runner_module
    from s3prl import run_pretrain

    assert runner_module.torch is torch and run_pretrain.os is os  # s3prl's modules as they were
