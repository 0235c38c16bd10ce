"""Hostile teacher files and layer strings: nothing s3prl reads for us runs code."""

import pathlib
import sys

import pytest
import torch

from s3prl_ekd.config.layer_spec import LayerSpecError, check_eval_strings, parse_layer_spec
from s3prl_ekd.distill.student import StudentConfigError, make_student_config
from s3prl_ekd.io.checkpoint import CheckpointError
from s3prl_ekd.io.load_guard import SAFE_LOCAL_UPSTREAMS, UNSAFE_LOCAL_UPSTREAMS, guarded_torch_load
from s3prl_ekd.teachers.ensemble import TeacherEnsemble
from s3prl_ekd.teachers.spec import TeacherError


class Payload:
    """Unpickling this calls ``Path.touch(marker)``: what a hostile file would do, harmlessly."""

    def __init__(self, marker):
        self.marker = pathlib.Path(marker)

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def _expression(marker) -> str:
    """A string that, if eval()ed, creates ``marker`` and still yields a valid layer list."""
    return f"__import__('pathlib').Path({str(marker)!r}).touch() or [(32,10,5)] + [(32,3,2)] * 4 + [(32,2,2)] * 2"


# s3prl's builders of these read with torch.load(weights_only=False)
@pytest.mark.parametrize("upstream", ["distiller_local", "tera_local", "mockingjay_local", "audio_albert_local"])
def test_hostile_file_for_an_unsafe_s3prl_builder_is_refused_unread(tmp_path, upstream):
    marker = tmp_path / "MARKER"
    hostile = tmp_path / "hostile.ckpt"
    torch.save({"Config": {"distiller": {}}, "Upstream_Config": {}, "x": Payload(marker)}, hostile)
    with pytest.raises(TeacherError, match=r"teacher 't'.*hostile\.ckpt holds objects that are not plain data"):
        TeacherEnsemble([{"name": "t", "upstream": upstream, "ckpt": str(hostile)}])
    assert not marker.exists()


def test_inside_the_guard_s3prl_own_unsafe_load_is_safe(tmp_path):
    """s3prl's distiller builder calls torch.load(weights_only=False) itself: the guard overrides it."""
    import s3prl.hub as hub

    marker = tmp_path / "MARKER"
    hostile = tmp_path / "hostile.ckpt"
    torch.save({"Config": {"distiller": {}}, "x": Payload(marker)}, hostile)
    earlier = sys.modules.pop("optimizers", None)
    try:
        with guarded_torch_load(), pytest.raises(CheckpointError, match="hostile.ckpt.*not plain data"):
            hub.distiller_local(ckpt=str(hostile))
        # the builder's temporary `optimizers` alias, left behind by the refusal, is gone too
        assert "optimizers" not in sys.modules
    finally:
        if earlier is not None:
            sys.modules["optimizers"] = earlier
    assert not marker.exists()
    assert torch.load.__module__ == "torch.serialization"  # restored on exit


def test_every_local_upstream_of_s3prl_is_listed_safe_or_refused():
    import s3prl.hub as hub

    from s3prl_ekd import register

    register()  # our ekd_student_local too
    local = {n for n in dir(hub) if n.endswith("_local") and not n.startswith("_")}
    assert local == SAFE_LOCAL_UPSTREAMS | set(UNSAFE_LOCAL_UPSTREAMS)
    assert not SAFE_LOCAL_UPSTREAMS & set(UNSAFE_LOCAL_UPSTREAMS)


@pytest.mark.parametrize("upstream", ["pase_local", "espnet_hubert_local", "hf_hubert_custom"])
def test_upstreams_whose_loader_cannot_be_made_safe_are_refused_with_an_alternative(tmp_path, upstream):
    f = tmp_path / "model.ckpt"
    torch.save({"w": torch.zeros(1)}, f)
    with pytest.raises(TeacherError, match=rf"upstream '{upstream}' is refused: .*cannot make safe.*Instead, .*hubert_local"):
        TeacherEnsemble([{"name": "t", "upstream": upstream, "ckpt": str(f)}])


@pytest.mark.parametrize("name, upstream, cfg_key", [
    ("hubert", "hubert_local", "model_cfg"),
    ("wavlm", "wavlm_local", "cfg"),
])
def test_teacher_config_expression_is_refused_before_s3prl_evals_it(tmp_path, tiny_teachers, name, upstream, cfg_key):
    marker = tmp_path / "MARKER"
    state = torch.load(tiny_teachers[name], weights_only=True)
    state[cfg_key]["conv_feature_layers"] = _expression(marker)
    bad = tmp_path / "bad.pt"
    torch.save(state, bad)
    with pytest.raises(TeacherError, match=rf"teacher 't'.*bad\.pt.*`{cfg_key}\.conv_feature_layers` .* is not a layer list"):
        TeacherEnsemble([{"name": "t", "upstream": upstream, "ckpt": str(bad)}])
    assert not marker.exists()


def test_student_config_expression_is_refused(tmp_path, tiny_student_config):
    marker = tmp_path / "MARKER"
    with pytest.raises(StudentConfigError, match="`extractor_conv_feature_layers` .* is not a layer list"):
        make_student_config({**tiny_student_config, "extractor_conv_feature_layers": _expression(marker)})
    assert not marker.exists()


@pytest.mark.parametrize("text, why", [
    ("[(1,1,1)] * 60000", "60000 layers"),  # refused before the list is built
    ("[(1,1,1)] * 4 * 4 * 4 * 4 * 4", "1024 layers"),
    ("[(1,1,1)] * 100000", "not an integer in 0..65536"),
    ("[(512,10,5)] + x", "unsupported expression"),
    ("[(512,-10,5)]", "not an integer"),
    ("[(512,10.5,5)]", "not an integer"),
    ("[(True,10,5)]", "not an integer"),
    ("[(512,10,5)][0]", "unsupported expression"),
])
def test_layer_grammar_refuses_anything_else(text, why):
    with pytest.raises(LayerSpecError, match=why):
        parse_layer_spec(text, "conv_feature_layers")


def test_layer_grammar_reads_what_eval_reads():
    for text in ["[(512,10,5)] + [(512,3,2)] * 4 + [(512,2,2)] * 2", "[(512, 10, 5)]", "2 * [(1, 2)] + [3]", "[4, 4]", "[]"]:
        assert parse_layer_spec(text) == eval(text)  # our own constant strings: the reference


def test_none_only_keys_and_nested_configs():
    check_eval_strings({"cfg": {"model": {"conv_feature_layers": "[(1,2,3)]", "xformers_att_config": None}}})
    with pytest.raises(LayerSpecError, match=r"`a\.xformers_att_config` must be empty"):
        check_eval_strings({"a": {"xformers_att_config": "print(1)"}})
    with pytest.raises(LayerSpecError, match=r"`x\[0\]\.conv_aggregator_layers`"):
        check_eval_strings({"x": [{"conv_aggregator_layers": "open('f')"}]})


def test_a_plain_distiller_file_still_loads_as_a_teacher(tmp_path, tiny_student_config):
    from s3prl_ekd.distill.student import EKDStudent
    from s3prl_ekd.distill.student_checkpoint import to_s3prl_distiller
    from s3prl_ekd.distill.targets import TargetPlan

    student = EKDStudent(tiny_student_config, TargetPlan.from_scheme("average", {"a": 32}))
    torch.save(to_s3prl_distiller(student), tmp_path / "distiller.ckpt")
    ensemble = TeacherEnsemble([{"name": "d", "upstream": "distiller_local", "ckpt": str(tmp_path / "distiller.ckpt")}])
    assert ensemble.dims == {"d": 32}


@pytest.mark.parametrize("env", [None, "1"])
def test_resume_from_a_hostile_checkpoint_never_runs_it(tmp_path, monkeypatch, env):
    """``run_pretrain.py -e`` reads the checkpoint with our reader; the unsafe variable stops it first."""
    import sys

    from s3prl_ekd.pretrain import launch

    marker = tmp_path / "MARKER"
    hostile = tmp_path / "states-3.ckpt"
    torch.save({"Args": None, "Config": {}, "x": Payload(marker)}, hostile)
    if env:
        monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", env)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["run_pretrain.py"])
    match = "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD is set.*unset" if env else r"states-3\.ckpt holds objects that are not plain data"
    with pytest.raises(SystemExit, match=match):
        launch.main(["-e", str(hostile)])
    assert not marker.exists()


@pytest.mark.slow
def test_run_downstream_reads_any_upstream_file_with_the_checked_reader(tmp_path, root_dir):
    """``run/run_downstream.py -u distiller_local -k hostile``: s3prl's builder would unpickle it."""
    import os
    import subprocess
    import sys

    marker = tmp_path / "MARKER"
    hostile = tmp_path / "hostile.ckpt"
    torch.save({"Config": {"distiller": {}}, "x": Payload(marker)}, hostile)
    cfg = tmp_path / "example.yaml"
    cfg.write_text("runner: {total_steps: 1}\noptimizer: {name: AdamW, lr: 0.001}\ndownstream_expert: {datarc: {}, modelrc: {}}\n")
    cmd = [sys.executable, os.path.join(root_dir, "run", "run_downstream.py"), "-m", "train", "-u", "distiller_local",
           "-k", str(hostile), "-d", "example", "-c", str(cfg), "-p", str(tmp_path / "exp"), "--device", "cpu"]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "run_downstream.py: checkpoint" in proc.stderr and "hostile.ckpt holds objects that are not plain data" in proc.stderr, proc.stderr[-2000:]
    assert not marker.exists()
