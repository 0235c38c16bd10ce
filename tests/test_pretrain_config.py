"""Shipped pretraining configs, unknown-key errors, and the paper's optimizer and schedule."""

import glob
import os

import pytest
import torch
import yaml
from conftest import ROOT

from s3prl_ekd.config.reader import to_dict
from s3prl_ekd.distill.student import StudentConfig
from s3prl_ekd.pretrain.ekd.config import (
    PretrainConfigError,
    check_runner_config,
    make_datarc,
    make_upstream_config,
)
from s3prl_ekd.pretrain.optim import get_EKDAdamW, get_EKDLinearWarmup

CONFIGS = os.path.join(ROOT, "upstream_configs")
TEACHERS = {
    "hubert": "hubert_base", "robust_hubert": "hubert_base_robust_mgr",
    "wavlm": "wavlm_base", "wavlm_plus": "wavlm_base_plus",
}


def load(name):
    with open(os.path.join(CONFIGS, name)) as f:
        return yaml.safe_load(f)


def test_every_upstream_config_is_valid_and_paper_default():
    names = sorted(os.path.basename(p) for p in glob.glob(os.path.join(CONFIGS, "*.yaml")))
    names.remove("pretrain_runner.yaml")
    assert len(names) == 19
    for name in names:
        cfg = make_upstream_config(os.path.join(CONFIGS, name))
        assert cfg["student"] == to_dict(StudentConfig()), name  # the written block is DistilHuBERT's
        assert cfg["targets"]["layers"] == [4, 8, 12] and cfg["task"]["sequence_length"] == 250000
        assert cfg["loss"] == {"l1_weight": 1.0, "cosine_weight": 1.0}
        assert cfg["distortions"]["enabled"] is False
        for t in cfg["teachers"]:
            assert TEACHERS[t["name"]] == t["upstream"], name
        stem = name[: -len(".yaml")]
        if stem.startswith("distilhubert"):
            expected = 1
        elif stem.count("_") == 1 or stem.endswith("_wavlm_plus"):  # ekd_<scheme>[_wavlm_plus]
            expected = 3
        else:  # ekd_<scheme>_<teacher>_<teacher>
            expected = 2
        assert len(cfg["teachers"]) == expected, name
    for scheme in ("average", "concat", "multihead"):
        cfg = make_upstream_config(os.path.join(CONFIGS, f"ekd_{scheme}.yaml"))
        assert cfg["targets"]["scheme"] == scheme
        assert [t["name"] for t in cfg["teachers"]] == ["hubert", "robust_hubert", "wavlm"]


def test_runner_config_holds_the_paper_recipe(tmp_path):
    cfg = load("pretrain_runner.yaml")
    assert cfg["runner"]["total_steps"] == 200000 and cfg["runner"]["gradient_clipping"] == 5.0
    assert cfg["pretrain_expert"]["datarc"]["train_batch_size"] == 24
    assert cfg["optimizer"] == {
        "name": "EKDAdamW", "lr": 2e-4, "betas": [0.9, 0.98], "eps": 1e-6, "weight_decay": 0.01, "no_decay": ["bias"],
    }
    assert cfg["scheduler"] == {"name": "EKDLinearWarmup", "warmup_proportion": 0.07}
    with pytest.raises(PretrainConfigError, match="libri_root is not set"):
        check_runner_config(cfg)
    cfg["pretrain_expert"]["datarc"]["libri_root"] = str(tmp_path)
    check_runner_config(cfg)


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda c: c.update(teacher=[]), r"unknown key\(s\) \['teacher'\]"),
        (lambda c: c["targets"].update(shceme="average"), "targets.shceme"),
        (lambda c: c.update(student={"encoder_layer": 3}), "encoder_layer"),
        (lambda c: c.update(distortions={"enable": True}), "distortions.enable"),
        (lambda c: c.update(teacher_speedups={"bf16": True}), r"unknown key\(s\) teacher_speedups\.bf16: valid are"),
        (lambda c: c.update(init_from={"teacher": "data2vec"}), "init_from must be a mapping whose `teacher` is one of"),
        (lambda c: c.update(init_from={"teacher": "hubert", "conv_only": True}), "init_from.conv_only"),
        (lambda c: c.update(teachers=[{"name": "a"}, {"name": "a"}]), "distinct `name`"),
    ],
)
def test_unknown_upstream_keys_are_errors_naming_the_key(change, match):
    cfg = load("ekd_average.yaml")
    change(cfg)
    with pytest.raises(PretrainConfigError, match=match):
        make_upstream_config(cfg)


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda c: c["runner"].update(totl_steps=5), "runner.totl_steps"),
        (lambda c: c.update(optimiser={}), r"\['optimiser'\]"),
        (lambda c: c["pretrain_expert"]["datarc"].update(batch_size=8), "pretrain_expert.datarc.batch_size"),
        (lambda c: c["runner"].pop("max_keep"), r"key `runner\.max_keep` is missing"),
    ],
)
def test_unknown_runner_keys_are_errors_naming_the_key(change, match, tmp_path):
    cfg = load("pretrain_runner.yaml")
    cfg["pretrain_expert"]["datarc"]["libri_root"] = str(tmp_path)
    change(cfg)
    with pytest.raises(PretrainConfigError, match=match):
        check_runner_config(cfg)


def test_datarc_defaults():
    d = make_datarc({"libri_root": "/x", "file_path": "/y"})
    assert d["train_batch_size"] == 24 and d["sets"] == ["train-clean-100", "train-clean-360", "train-other-500"]


def test_adamw_and_linear_warmup_are_the_recipes():
    model = torch.nn.Linear(4, 4)
    opt = get_EKDAdamW([model], total_steps=100, lr=2e-4, betas=[0.9, 0.98], eps=1e-6, weight_decay=0.01)
    group = opt.param_groups[0]
    assert (group["lr"], group["betas"], group["eps"], group["weight_decay"]) == (2e-4, (0.9, 0.98), 1e-6, 0.01)
    sched = get_EKDLinearWarmup(opt, num_training_steps=100, warmup_proportion=0.07)
    lrs = []
    for _ in range(100):
        lrs.append(opt.get_lr()[0])
        opt.step()
        sched.step()
    # update k (lrs[k - 1]) uses s3prl's factor: k / 7 over the 7 warm-up updates, then (100 - k) / 93
    assert lrs[0] == pytest.approx(2e-4 / 7) and lrs[6] == pytest.approx(2e-4)
    assert lrs[2] == pytest.approx(2e-4 * 3 / 7) and lrs[49] == pytest.approx(2e-4 * 50 / 93)
    assert lrs[99] == 0.0


def test_scheduler_resume_restores_the_current_lr():
    # s3prl's Runner loads the optimizer, then builds the scheduler (which resets the lr to update
    # 1's), then loads the scheduler: the lr must be the checkpoint's again
    model = torch.nn.Linear(4, 4)
    opt = get_EKDAdamW([model])
    sched = get_EKDLinearWarmup(opt, 100)
    for _ in range(30):
        opt.step()
        sched.step()
    opt_state, sched_state, lr = opt.state_dict(), sched.state_dict(), opt.get_lr()[0]
    opt2 = get_EKDAdamW([model])
    opt2.load_state_dict(opt_state)
    sched2 = get_EKDLinearWarmup(opt2, 100)
    assert opt2.get_lr()[0] == pytest.approx(2e-4 / 7) != lr  # update 1's lr, not the checkpoint's
    sched2.load_state_dict(sched_state)
    assert opt2.get_lr()[0] == lr > 0


def test_config_command_prints_the_full_config_of_a_short_shipped_one(capsys):
    from s3prl_ekd.cli import main

    shipped = load("ekd_average.yaml")
    assert set(shipped) == {"teachers", "targets", "init_from"}  # only what differs from the defaults
    assert main(["config", "ekd_average"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed == make_upstream_config(os.path.join(CONFIGS, "ekd_average.yaml"))
    assert printed["student"] == to_dict(StudentConfig()) and printed["task"] == {"sequence_length": 250000}
    assert main(["config", "pretrain_runner"]) == 0  # a runner config: as written
    assert yaml.safe_load(capsys.readouterr().out) == load("pretrain_runner.yaml")
    assert main(["config", "ekd_avg"]) == 1
    assert "config 'ekd_avg' is neither a file nor a shipped upstream config" in capsys.readouterr().err
