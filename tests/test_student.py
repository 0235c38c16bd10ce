import pytest
import torch

from s3prl_ekd.distill.student import EKDStudent, StudentConfigError, make_student_config
from s3prl_ekd.distill.student_checkpoint import to_s3prl_distiller
from s3prl_ekd.distill.targets import TargetPlan
from s3prl_ekd.io.atomic import atomic_save


def test_paper_student_has_published_size():
    # DistilHuBERT: 23.49 M parameters without heads; s3prl's 3-head model: 27,034,752
    s = EKDStudent({}, TargetPlan.from_scheme("single", {"hubert_base": 768}))
    assert s.num_parameters() == 23_491_200
    assert s.num_parameters(with_heads=True) == 27_034_752
    assert s.downsample_rate == 320 and s.receptive_field == 400


def test_matches_s3prl_distiller_local(tmp_path, tiny_student_config):
    """Our student, written in s3prl's distiller format, is s3prl's DistilHuBERT exactly."""
    import s3prl.hub as hub

    plan = TargetPlan.from_scheme("single", {"t": 32})
    student = EKDStudent(tiny_student_config, plan).eval()
    atomic_save(to_s3prl_distiller(student), tmp_path / "distiller.ckpt")
    ref = hub.distiller_local(ckpt=str(tmp_path / "distiller.ckpt")).eval()

    wavs = [torch.randn(16000), torch.randn(16000)]
    with torch.no_grad():
        ours = student(wavs)
        theirs = ref(wavs)["hidden_states"]
    # s3prl lists [projected feature, layer 1, layer 2, head 1, head 2, head 3]
    assert len(theirs) == 3 + 3
    for a, b in zip(ours.hidden_states + ours.predictions, theirs):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "scheme,teachers,expected",
    [
        ("single", {"a": 32}, [("a/L4", 32), ("a/L8", 32), ("a/L12", 32)]),
        ("average", {"a": 32, "b": 32}, [("avg/L4", 32), ("avg/L8", 32), ("avg/L12", 32)]),
        ("concat", {"a": 32, "b": 48}, [("concat/L4", 80), ("concat/L8", 80), ("concat/L12", 80)]),
        (
            "multihead",
            {"a": 32, "b": 48},
            [("a/L4", 32), ("a/L8", 32), ("a/L12", 32), ("b/L4", 48), ("b/L8", 48), ("b/L12", 48)],
        ),
    ],
)
def test_heads_follow_plan(scheme, teachers, expected, tiny_student_config):
    plan = TargetPlan.from_scheme(scheme, teachers)
    s = EKDStudent(tiny_student_config, plan).eval()
    out = s([torch.randn(8000), torch.randn(6400)])
    assert [(t.name, t.dim) for t in plan.targets] == expected
    assert [p.shape for p in out.predictions] == [torch.Size([2, 24, d]) for _, d in expected]
    # one expand-last block per head group: multihead has one per teacher
    assert len(s.heads.blocks) == (len(teachers) if scheme == "multihead" else 1)


def test_frame_counts_unequal_lengths(tiny_student_config):
    s = EKDStudent(tiny_student_config, TargetPlan.from_scheme("single", {"a": 32})).eval()
    lengths = [16000, 11111, 400, 32000]
    out = s([torch.randn(n) for n in lengths])
    assert out.frame_lengths.tolist() == [(n - 400) // 320 + 1 for n in lengths] == [49, 34, 1, 99]
    assert len(out.hidden_states) == 3
    for h in out.hidden_states:
        assert h.shape == (4, 99, 32)
        # within s3prl's tolerance of the 320 rate (its Featurizer/validate check, < 5 frames)
        assert abs(round(32000 / 320) - h.shape[1]) < 5


def test_padding_does_not_change_features(tiny_student_config):
    s = EKDStudent(tiny_student_config, TargetPlan.from_scheme("single", {"a": 32})).eval()
    short, long = torch.randn(9000), torch.randn(20000)
    with torch.no_grad():
        alone = s([short])
        batched = s([long, short])
    n = int(alone.frame_lengths[0])
    for a, b in zip(alone.hidden_states + alone.predictions, batched.hidden_states + batched.predictions):
        torch.testing.assert_close(a[0], b[1, :n], atol=1e-4, rtol=1e-4)


def test_sub_frame_waveform_is_a_clear_error(tiny_student_config):
    s = EKDStudent(tiny_student_config, TargetPlan.from_scheme("single", {"a": 32}))
    with pytest.raises(ValueError, match="receptive field of 400 samples"):
        s([torch.randn(16000), torch.randn(100)])


def test_unknown_student_key_is_named():
    with pytest.raises(StudentConfigError, match=r"unknown key\(s\) student\.encoder_layer: valid are"):
        make_student_config({"encoder_layer": 3})


def test_conv_spec_is_parsed_without_eval():
    with pytest.raises(StudentConfigError, match="extractor_conv_feature_layers"):
        make_student_config({"extractor_conv_feature_layers": "__import__('os').system('true')"})
