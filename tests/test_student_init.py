import pytest
import torch

from s3prl_ekd.distill.student import EKDStudent
from s3prl_ekd.distill.student_init import StudentInitError, init_student_from_config, init_student_from_teacher
from s3prl_ekd.distill.targets import TargetPlan
from s3prl_ekd.teachers.ensemble import TeacherEnsemble, plan_from_config


@pytest.fixture(scope="module")
def ensemble(tiny_teachers):
    return TeacherEnsemble(
        [
            {"name": "hubert", "upstream": "hubert_local", "ckpt": tiny_teachers["hubert"]},
            {"name": "wavlm", "upstream": "wavlm_local", "ckpt": tiny_teachers["wavlm"]},
        ]
    )


def _student(config, **over):
    return EKDStudent({**config, **over}, TargetPlan.from_scheme("multihead", {"hubert": 32, "wavlm": 32}, layers=[2]))


def test_copies_conv_and_first_two_layers_of_the_teacher(ensemble, tiny_student_config):
    student = _student(tiny_student_config)
    before = {k: v.clone() for k, v in student.state_dict().items()}
    copied = init_student_from_teacher(student, ensemble, "hubert")
    teacher = ensemble.teachers["hubert"].expert.model.state_dict()
    sd = student.state_dict()
    assert "feature_extractor.conv_layers.0.0.weight" in copied and "encoder.pos_conv.0.weight_v" in copied
    assert {k.split(".")[2] for k in copied if k.startswith("encoder.layers.")} == {"0", "1"}
    for k in copied:
        assert torch.equal(sd[k], teacher[k]), k
    untouched = [k for k in sd if k not in copied]
    assert any(k.startswith("heads.") for k in untouched) and "encoder.layer_norm.weight" in untouched
    for k in untouched:  # as DistilHuBERT: heads and the encoder's layer norm keep their init
        assert torch.equal(sd[k], before[k]), k
    # the copied conv extractor computes what the teacher's does
    wav = torch.randn(1, 8000)
    with torch.no_grad():
        torch.testing.assert_close(
            student.feature_extractor(wav), ensemble.teachers["hubert"].expert.model.feature_extractor(wav)
        )


def test_shapes_that_do_not_fit_are_refused_or_random_when_allowed(ensemble, tiny_student_config):
    student = _student(tiny_student_config, encoder_ffn_embed_dim=48)
    with pytest.raises(StudentInitError, match=r"encoder.layers.0.fc1.weight: student \(48, 32\) vs teacher \(64, 32\)"):
        init_student_from_teacher(student, ensemble, "hubert")
    before = {k: v.clone() for k, v in student.state_dict().items()}
    assert init_student_from_config(student, ensemble, {"teacher": "hubert", "allow_random": True}) == []
    assert all(torch.equal(v, before[k]) for k, v in student.state_dict().items())
    # the conv extractor alone still fits
    assert init_student_from_config(student, ensemble, {"teacher": "hubert", "layers": False})


def test_wavlm_blocks_do_not_fit_the_student_but_its_conv_does(ensemble, tiny_student_config):
    student = _student(tiny_student_config)
    with pytest.raises(StudentInitError, match=r"teacher 'wavlm' has encoder.layers.0.self_attn.grep_a"):
        init_student_from_teacher(student, ensemble, "wavlm")
    copied = init_student_from_teacher(student, ensemble, "wavlm", layers=False)
    assert copied and all(k.startswith("feature_extractor.") for k in copied)


def test_config_block_errors(ensemble, tiny_student_config, tiny_teachers):
    student = _student(tiny_student_config)
    with pytest.raises(StudentInitError, match=r"unknown key\(s\) init_from\.teachr: valid are \['teacher', 'conv', 'layers', 'allow_random'\]"):
        init_student_from_config(student, ensemble, {"teachr": "hubert"})
    with pytest.raises(StudentInitError, match=r"teacher 'nope', which is not among the teachers"):
        init_student_from_config(student, ensemble, {"teacher": "nope"})
    cut = TeacherEnsemble([{"name": "hubert", "upstream": "hubert_local", "ckpt": tiny_teachers["hubert"]}])
    plan_from_config("single", cut, layers=[1])  # cuts the teacher to 1 block
    with pytest.raises(StudentInitError, match=r"computes 1: it was cut to the plan's deepest layer"):
        init_student_from_teacher(student, cut, "hubert")
