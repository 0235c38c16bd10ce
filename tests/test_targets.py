import pytest
import torch

from s3prl_ekd.distill.targets import PlanError, TargetPlan, align_frames


def _hidden():
    # hidden[teacher][layer] = constant tensors so every target is checkable by hand
    return {
        "a": [torch.full((1, 2, 2), float(l)) for l in range(13)],
        "b": [torch.full((1, 2, 2), float(10 * l)) for l in range(13)],
    }


def test_average_by_hand():
    plan = TargetPlan.from_scheme("average", {"a": 2, "b": 2})
    out = plan.build(_hidden())
    assert plan.names == ["avg/L4", "avg/L8", "avg/L12"]
    for l, t in zip((4, 8, 12), out):
        assert torch.equal(t, torch.full((1, 2, 2), (l + 10 * l) / 2))


def test_weighted_average_by_hand():
    plan = TargetPlan.from_scheme("average", {"a": 2, "b": 2}, layers=[4], teacher_weights={"a": 3.0, "b": 1.0})
    (t,) = plan.build(_hidden())
    assert torch.allclose(t, torch.full((1, 2, 2), 0.75 * 4 + 0.25 * 40))


def test_concat_by_hand():
    plan = TargetPlan.from_scheme("concat", {"a": 2, "b": 2}, layers=[8])
    (t,) = plan.build(_hidden())
    assert t.shape == (1, 2, 4) and t[0, 0].tolist() == [8, 8, 80, 80]


def test_multihead_and_per_teacher_layers():
    plan = TargetPlan.from_scheme("multihead", {"a": 2, "b": 2}, layers={"a": [4], "b": [2, 6]})
    out = plan.build(_hidden())
    assert plan.names == ["a/L4", "b/L2", "b/L6"]
    assert [t[0, 0, 0].item() for t in out] == [4, 20, 60]
    assert plan.groups() == {"a": [0], "b": [1, 2]}
    assert plan.required_layers() == {"a": 4, "b": 6}


def test_round_trip_dict():
    plan = TargetPlan.from_scheme("concat", {"a": 2, "b": 3})
    assert TargetPlan.from_dict(plan.to_dict()) == plan


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(scheme="average", teacher_dims={"a": 2, "b": 3}), "one hidden size.*'concat' or 'multihead'"),
        (dict(scheme="single", teacher_dims={"a": 2, "b": 2}), "exactly one teacher"),
        (dict(scheme="mean", teacher_dims={"a": 2}), "unknown scheme 'mean'"),
        (dict(scheme="average", teacher_dims={"a": 2, "b": 2}, layers={"a": [4]}), r"teacher\(s\) \['b'\]"),
        (dict(scheme="concat", teacher_dims={"a": 2, "b": 2}, layers={"a": [4], "b": [4, 8]}), "same number"),
    ],
)
def test_plan_errors_name_the_key(kwargs, match):
    with pytest.raises(PlanError, match=match):
        TargetPlan.from_scheme(**kwargs)


def test_align_frames_to_shortest():
    xs, t = align_frames([torch.zeros(1, 50, 2), torch.zeros(1, 49, 3)])
    assert t == 49 and [x.shape[1] for x in xs] == [49, 49]
