"""Config values YAML accepts but training cannot use: stopped before anything is built, naming the key."""

import math

import pytest
import torch
import yaml
from pretrain_helpers import run_in_process, tiny_runner_config, tiny_upstream_config, write_yaml

from s3prl_ekd.config.values import ConfigValueError
from s3prl_ekd.distill.student import EKDStudent
from s3prl_ekd.distill.student_checkpoint import load_student, student_state
from s3prl_ekd.distill.targets import TargetPlan
from s3prl_ekd.io.checkpoint import CheckpointError
from s3prl_ekd.pretrain.ekd.config import PretrainConfigError, make_upstream_config

TEACHERS = [{"name": "hubert", "upstream": "hubert_base"}, {"name": "wavlm", "upstream": "wavlm_base"}]


def _config(**changes):
    config = {"teachers": [dict(t) for t in TEACHERS], "targets": {"scheme": "average"}}
    for path, value in changes.items():
        *parents, last = path.split("__")
        node = config
        for p in parents:
            node = node[int(p)] if p.isdigit() else node.setdefault(p, {})
        node[last] = value
    return config


@pytest.mark.parametrize("change, match", [
    ({"teachers__0__weight": math.nan}, r"teacher 'hubert': `weight` must be a finite number > 0, got nan"),
    ({"teachers__0__weight": math.inf}, r"`weight` must be a finite number > 0, got inf"),
    ({"teachers__0__weight": "heavy"}, r"`weight` must be a finite number"),
    ({"targets__teacher_weights": {"hubert": 0, "wavlm": 1}}, r"`targets\.teacher_weights\.hubert` must be a finite number > 0, got 0"),
    ({"targets__teacher_weights": {"hubert": -1.0, "wavlm": 1}}, r"`targets\.teacher_weights\.hubert`"),
    ({"targets__teacher_weights": {"hubert": math.nan}}, r"`targets\.teacher_weights\.hubert`.*got nan"),
    ({"targets__teacher_weights": {"hubret": 1.0}}, r"`targets\.teacher_weights\.hubret` names no teacher"),
    ({"loss__l1_weight": -1.0}, r"`loss\.l1_weight` must be a finite number >= 0, got -1"),
    ({"loss__cosine_weight": math.inf}, r"`loss\.cosine_weight`"),
    ({"loss__l1_weight": 0, "loss__cosine_weight": 0}, r"both 0"),
    ({"teachers__0__name": "train"}, r"key `name` .*nn\.Module attribute.*got 'train'"),
    ({"teachers__0__name": "hub.ert"}, r"key `name` .*no '\.'.*got 'hub\.ert'"),
    ({"targets__layers": "4, 8, 12"}, r"`targets\.layers` must be a list or a mapping, got '4, 8, 12'"),
    ({"targets__layers": {"hubert": "4"}}, r"`targets\.layers\.hubert` must be a list"),
    ({"teachers__0__layers": "4"}, r"teacher 'hubert': `layers` must be a list, got '4'"),
    ({"targets__scheme": "mean"}, r"`targets\.scheme` must be one of \['single', 'average', 'concat', 'multihead'\]"),
    ({"student__encoder_embed_dim": 0}, r"`student\.encoder_embed_dim` must be an integer in 1\.\.65536, got 0"),
    ({"student__encoder_attention_heads": 0}, r"`student\.encoder_attention_heads` must be an integer"),
    ({"student__layer_norm_first": "false"}, r"`student\.layer_norm_first` must be true or false \(unquoted\), got 'false'"),
    ({"student__dropout": math.nan}, r"`student\.dropout` must be a finite number"),
    ({"task__sequence_length": -5}, r"`task\.sequence_length` must be an integer"),
    ({"distortions__enabled": "false"}, r"`distortions\.enabled` must be true or false \(unquoted\)"),
    ({"distortions__reverberation": {"prob": math.nan}}, r"`distortions\.reverberation\.prob` must be a finite number"),
    ({"distortions__reverberation": {"rt60": [0.0, 0.5]}}, r"`distortions\.reverberation\.rt60\[0\]` must be a finite number > 0, got 0\.0"),
    ({"distortions__gaussian_noise": {"snr_db": [math.nan, 5.0]}}, r"`distortions\.gaussian_noise\.snr_db\[0\]` must be a finite number, got nan"),
])
def test_bad_values_stop_the_config_naming_the_key(change, match):
    with pytest.raises(PretrainConfigError, match=match):
        make_upstream_config(_config(**change), origin="up.yaml")


def test_shipped_configs_pass(root_dir):
    import glob
    import os

    for path in sorted(glob.glob(os.path.join(root_dir, "upstream_configs", "*.yaml"))):
        if not path.endswith("pretrain_runner.yaml"):
            make_upstream_config(path)


def test_options_file_with_a_string_boolean_is_refused(tmp_path):
    from s3prl_ekd.upstream.ekd_student.expert import read_options

    options = tmp_path / "options.yaml"
    options.write_text('include_heads: "false"\n')
    with pytest.raises(ConfigValueError, match=r"options\.yaml\): `include_heads` must be true or false \(unquoted\), got 'false'"):
        read_options(str(options), {})
    options.write_text("include_heads: false\n")
    assert read_options(str(options), {}) == {"include_heads": False}
    options.write_text("include_head: true\n")
    with pytest.raises(ConfigValueError, match=r"options\.yaml\): unknown key\(s\) \['include_head'\]: valid are \['include_heads'\]"):
        read_options(str(options), {})


@pytest.mark.parametrize("key, value", [
    ("encoder_attention_heads", 0),
    ("conv_pos", 0),
    ("conv_pos_groups", 0),
    ("activation_fn", "gelu_but_not"),
    ("attention_type", "sparse"),
    ("extractor_mode", "group_norm"),
    ("extractor_conv_feature_layers", "[(32,10,0)] + [(32,3,2)] * 4 + [(32,2,2)] * 2"),
    ("encoder_embed_dim", -32),
    ("extractor_conv_feature_layers", "[(32,10,5)] * 60000"),  # refused before the list is built
])
def test_damaged_student_checkpoint_values_are_checkpoint_errors_naming_file_and_key(tmp_path, tiny_student_config, key, value):
    state = student_state(EKDStudent(tiny_student_config, TargetPlan.from_scheme("single", {"a": 32})))
    state["Config"]["student"][key] = value
    path = tmp_path / "damaged.ckpt"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=rf"damaged\.ckpt.*{key}"):
        load_student(path)


def test_student_of_another_frame_rate_than_the_teachers_is_refused(tiny_teachers):
    from s3prl_ekd.teachers.ensemble import TeacherEnsemble
    from s3prl_ekd.teachers.spec import TeacherError

    ensemble = TeacherEnsemble([{"name": "h", "upstream": "hubert_local", "ckpt": tiny_teachers["hubert"]}])
    ensemble.check_student_frame_rate(320)
    with pytest.raises(TeacherError, match=r"student gives a frame every 160 samples .*teachers every 320.*product is 320"):
        ensemble.check_student_frame_rate(160)


def _run_dir(tmp_path, name):
    return tmp_path / "result" / "pretrain" / name


def test_nan_teacher_weight_stops_run_pretrain_before_step_one(tiny_librispeech, tiny_teachers, tmp_path):
    teachers = [{"name": "hubert", "upstream": "hubert_local", "ckpt": tiny_teachers["hubert"], "weight": math.nan}]
    runner = write_yaml(tiny_runner_config(tiny_librispeech, total_steps=2), tmp_path / "runner.yaml")
    upstream = tmp_path / "upstream.yaml"
    upstream.write_text(yaml.safe_dump(tiny_upstream_config(teachers, "single")))  # weight: .nan
    with pytest.raises(SystemExit, match=r"upstream\.yaml: teacher 'hubert': `weight` must be a finite number > 0, got nan"):
        run_in_process(["-u", "ekd", "-c", runner, "-g", str(upstream), "-n", "nan"], str(tmp_path))
    assert not list(_run_dir(tmp_path, "nan").glob("*.ckpt"))


def test_a_run_whose_every_step_was_skipped_does_not_exit_zero(tiny_librispeech, tiny_teachers, tmp_path, monkeypatch):
    from s3prl_ekd.distill.loss import DistillLoss

    real_forward = DistillLoss.forward

    def always_nan(self, *args, **kwargs):
        loss, records = real_forward(self, *args, **kwargs)
        return loss * float("nan"), records

    monkeypatch.setattr(DistillLoss, "forward", always_nan)
    teachers = [{"name": "hubert", "upstream": "hubert_local", "ckpt": tiny_teachers["hubert"]}]
    runner = write_yaml(tiny_runner_config(tiny_librispeech, total_steps=4, save_step=2), tmp_path / "runner.yaml")
    upstream = write_yaml(tiny_upstream_config(teachers, "single"), tmp_path / "upstream.yaml")
    with pytest.raises(SystemExit, match=r"all 4 updates were skipped \(NaN/inf gradients\): the student did not train"):
        run_in_process(["-u", "ekd", "-c", runner, "-g", upstream, "-n", "allnan"], str(tmp_path))


def test_check_known_keys_names_the_keys_and_raises_the_callers_error():
    from s3prl_ekd.config.values import check_known_keys

    class MyError(Exception):
        pass

    check_known_keys({"a": 1}, ("a", "b"), "x.yaml", MyError)  # all known: no error
    with pytest.raises(MyError, match=r"^x.yaml: unknown key\(s\) \['c', 'd'\]: valid are \['b', 'a'\]$"):
        check_known_keys({"a": 1, "d": 2, "c": 3}, ("b", "a"), "x.yaml", MyError)
    with pytest.raises(MyError, match=r"^unknown key\(s\) runner.c: valid are \['a'\]$"):
        check_known_keys({"c": 1}, {"a"}, error=MyError, prefix="runner")
