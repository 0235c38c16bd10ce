"""The ensemble keeps only the teacher layers the target plan uses, in fp32, and runs no unused teacher."""

import torch

from s3prl_ekd.teachers.ensemble import TeacherEnsemble, plan_from_config


def _spec(paths, name):
    return {"name": name, "upstream": "wavlm_local" if name == "wavlm" else "hubert_local", "ckpt": paths[name]}


def _bytes(tensors):
    """Bytes of the distinct storages behind ``tensors`` (cropped views share their storage)."""
    storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors}
    return sum(storages.values())


def test_only_the_plans_layers_are_kept(tiny_teachers):
    ens = TeacherEnsemble([_spec(tiny_teachers, "hubert"), _spec(tiny_teachers, "wavlm")], speedups={"autocast": "bf16"})
    plan = plan_from_config("multihead", ens, layers={"hubert": [2, 4], "wavlm": [4]})
    assert plan.used_layers() == {"hubert": [2, 4], "wavlm": [4]}
    wavs = [torch.randn(16000), torch.randn(12345)]
    with torch.no_grad():
        full = ens(wavs)
        kept = ens(wavs, layers=plan.used_layers())
    assert {n: list(h) for n, h in kept.items()} == {"hubert": [2, 4], "wavlm": [4]}
    for name, layers in plan.used_layers().items():
        for l in layers:  # the same computation: equal floats, fp32 as the loss needs
            assert kept[name][l].dtype == torch.float32 and torch.equal(kept[name][l], full[name][l])
    for a, b in zip(plan.build(kept), plan.build(full)):
        assert torch.equal(a, b)
    # 3 of the 5 + 5 hidden states the two tiny teachers give
    held_all = _bytes([h for hs in full.values() for h in hs])
    held_kept = _bytes([h for hs in kept.values() for h in hs.values()])
    assert held_kept == held_all * 3 // 10


def test_a_teacher_no_target_reads_does_not_run(tiny_teachers):
    ens = TeacherEnsemble([_spec(tiny_teachers, "hubert"), _spec(tiny_teachers, "wavlm")])
    calls = []
    ens.teachers["wavlm"].register_forward_hook(lambda *args: calls.append(1))
    with torch.no_grad():
        out = ens([torch.randn(8000)], layers={"hubert": [1]})
    assert list(out) == ["hubert"] and not calls
