import pytest
import torch

from s3prl_ekd.distill.targets import PlanError, TargetPlan
from s3prl_ekd.teachers.ensemble import TeacherEnsemble, plan_from_config
from s3prl_ekd.teachers.spec import TeacherError


def _wavs():
    g = torch.Generator().manual_seed(1)
    # 16000 samples give 49 frames: odd, so HuBERT pads its encoder input to 50 inside
    return [torch.randn(16000, generator=g), torch.randn(11000, generator=g)]


def _spec(tiny_teachers, name, upstream=None, **kw):
    up = upstream or ("wavlm_local" if name.startswith("wavlm") else "hubert_local")
    return {"name": name, "upstream": up, "ckpt": tiny_teachers[name], **kw}


def test_teachers_load_through_s3prl_hub_and_are_frozen(tiny_teachers):
    import s3prl.hub as hub

    ens = TeacherEnsemble([_spec(tiny_teachers, "hubert"), _spec(tiny_teachers, "wavlm")])
    assert ens.names == ["hubert", "wavlm"]
    assert ens.dims == {"hubert": 32, "wavlm": 32}
    assert ens.num_layers == {"hubert": 4, "wavlm": 4}
    assert ens.downsample_rates == {"hubert": 320, "wavlm": 320}
    ens.train()  # a parent's .train() must not wake dropout in the teachers
    assert not any(m.training for m in ens.modules())
    assert not any(p.requires_grad for p in ens.parameters())
    for t in ens.teachers.values():
        assert t.expert.model.encoder.layerdrop == 0.0  # the tiny files say 0.05

    wavs = _wavs()
    hidden = ens(wavs)
    for name, fn in (("hubert", hub.hubert_local), ("wavlm", hub.wavlm_local)):
        # the same expert, frozen the same way (attention takes a fused path without grads)
        ref = fn(ckpt=tiny_teachers[name]).eval().requires_grad_(False)
        with torch.no_grad():  # s3prl's expert on each utterance alone: our padded batch is exact
            alone = [ref([w])["hidden_states"] for w in wavs]
        assert len(hidden[name]) == 5  # layer 0 (pre-transformer) + 4 blocks, s3prl's order
        for layer, got in enumerate(hidden[name]):
            assert got.shape == (2, 49, 32)
            for i, hs in enumerate(alone):  # masked vs fused group norm: fp32 sums in another order
                exp = hs[layer][0]
                torch.testing.assert_close(got[i, : exp.shape[0]], exp, atol=1e-5, rtol=1e-5)
        assert not hidden[name][-1].requires_grad


def test_ensemble_aligns_frames_to_the_shortest(tiny_teachers):
    ens = TeacherEnsemble([_spec(tiny_teachers, "hubert"), _spec(tiny_teachers, "wavlm")])
    # both give 49 frames here; make WavLM give one fewer (as some teachers do) to check the crop
    orig = ens.teachers["wavlm"].forward
    ens.teachers["wavlm"].forward = lambda wavs: [h[:, :-1] for h in orig(wavs)]
    hidden = ens(_wavs())
    assert {h.shape[1] for hs in hidden.values() for h in hs} == {48}


@pytest.mark.parametrize("name", ["hubert", "hubert_preln", "wavlm"])
def test_truncation_keeps_the_needed_layers_unchanged(tiny_teachers, name):
    wavs = _wavs()
    full = TeacherEnsemble([_spec(tiny_teachers, name)])
    want = full(wavs)[name]
    plan = TargetPlan.from_scheme("single", full.dims, layers=[1, 2])
    cut = TeacherEnsemble([_spec(tiny_teachers, name)], plan=plan)
    teacher = cut.teachers[name]
    assert teacher.depth == 2 and len(teacher.expert.model.encoder.layers) == 2
    assert cut.num_layers[name] == 4  # what the teacher has, not what it computes
    got = cut(wavs)[name]
    assert len(got) == 3
    for g, w in zip(got, want[:3]):
        assert g.shape == w.shape
        torch.testing.assert_close(g, w, rtol=0, atol=1e-6)
    assert len(plan.build({name: got})) == 2


def test_plan_from_config_uses_spec_layers_and_weights(tiny_teachers):
    ens = TeacherEnsemble(
        [
            _spec(tiny_teachers, "hubert", layers=[2, 4], weight=3.0),
            _spec(tiny_teachers, "hubert2", layers=[2, 4], weight=1.0),
        ]
    )
    plan = plan_from_config("average", ens)
    assert plan.names == ["avg/L2", "avg/L4"]
    assert plan.targets[0].source_weights == (0.75, 0.25)
    assert ens.plan is plan
    hidden = ens(_wavs())
    targets = plan.build(hidden)
    torch.testing.assert_close(targets[1], 0.75 * hidden["hubert"][4] + 0.25 * hidden["hubert2"][4])

    multi = plan_from_config("multihead", TeacherEnsemble([_spec(tiny_teachers, "hubert")]), layers=[1])
    assert multi.names == ["hubert/L1"]


def test_layer_beyond_a_teachers_depth_is_an_error(tiny_teachers):
    with pytest.raises(TeacherError, match=r"teacher 'hubert' has 4 transformer layers .* asks for layer 8"):
        TeacherEnsemble([_spec(tiny_teachers, "hubert", layers=[4, 8])])
    ens = TeacherEnsemble([_spec(tiny_teachers, "hubert")])
    with pytest.raises(TeacherError, match=r"target 'hubert/L8' asks for layer 8: choose layers <= 4"):
        plan_from_config("single", ens)  # the paper's default layers 4, 8, 12
    with pytest.raises(TeacherError, match="not among the teachers"):
        ens.check_plan(TargetPlan.from_scheme("single", {"other": 32}, layers=[1]))


def test_average_of_unequal_dims_is_an_error(tiny_teachers):
    ens = TeacherEnsemble([_spec(tiny_teachers, "hubert"), _spec(tiny_teachers, "hubert_wide")])
    with pytest.raises(PlanError, match=r"one hidden size.*'hubert': 32, 'hubert_wide': 48"):
        plan_from_config("average", ens, layers=[2, 4])
    plan = plan_from_config("concat", ens, layers=[2, 4])  # concat takes them
    assert plan.targets[0].dim == 80
    bad = TargetPlan.from_scheme("average", {"hubert": 32, "hubert_wide": 32}, layers=[2])
    with pytest.raises(TeacherError, match=r"averages teachers of different hidden sizes"):
        ens.check_plan(bad)


def test_different_frame_rates_name_the_teacher(tiny_teachers):
    with pytest.raises(TeacherError, match=r"different frame rates.*'hubert_160' every 160"):
        TeacherEnsemble([_spec(tiny_teachers, "hubert"), _spec(tiny_teachers, "hubert_160")])


def test_bad_specs_name_teacher_and_key(tiny_teachers):
    with pytest.raises(TeacherError, match=r"teacher 'hubert': unknown key\(s\) \['path'\]"):
        TeacherEnsemble([{**_spec(tiny_teachers, "hubert"), "path": "x"}])
    with pytest.raises(TeacherError, match=r"teacher 'x': key `upstream` is missing"):
        TeacherEnsemble([{"name": "x"}])
    with pytest.raises(TeacherError, match=r"'hubert_bsae' .* not an s3prl hub name. Did you mean hubert_base"):
        TeacherEnsemble([{"name": "h", "upstream": "hubert_bsae"}])
    with pytest.raises(TeacherError, match=r"'hubert_local' loads a file: give its path with key `ckpt`"):
        TeacherEnsemble([{"name": "h", "upstream": "hubert_local"}])
    with pytest.raises(TeacherError, match=r"does not exist"):
        TeacherEnsemble([{"name": "h", "upstream": "hubert_local", "ckpt": "/nonexistent.pt"}])
    with pytest.raises(TeacherError, match=r"appear more than once"):
        TeacherEnsemble([_spec(tiny_teachers, "hubert"), _spec(tiny_teachers, "hubert")])
    with pytest.raises(TeacherError, match=r"`weight` must be a finite number > 0"):
        TeacherEnsemble([_spec(tiny_teachers, "hubert", weight=0)])


def test_hub_names_resolve_to_s3prls_hub_functions(tiny_teachers, monkeypatch):
    import s3prl.hub as hub

    calls = []

    def fake_hubert_base(**kwargs):  # the real one downloads; no network in tests
        calls.append(kwargs)
        return hub.hubert_local(ckpt=tiny_teachers["hubert"])

    monkeypatch.setattr(hub, "hubert_base", fake_hubert_base)
    ens = TeacherEnsemble([{"name": "hubert", "upstream": "hubert_base"}])
    assert calls == [{}] and ens.num_layers == {"hubert": 4}
    with pytest.raises(TeacherError, match=r"downloads its own weights, so `ckpt`"):
        TeacherEnsemble([{"name": "hubert", "upstream": "hubert_base", "ckpt": tiny_teachers["hubert"]}])
