"""Teacher speed-ups: the config block, and targets of the optimised path against the fp32 path.

Stated tolerance (README "Throughput"): bf16 autocast + inference mode + truncation keep every
target frame within cosine similarity 0.999 of the fp32 targets. One padded call per teacher gives
the per-length calls' targets: the conv extractor's group norm and the frame mask follow each
utterance's own length.
"""

import contextlib

import pytest
import torch

from s3prl_ekd.distill.loss import DistillLoss
from s3prl_ekd.distill.targets import TargetPlan
from s3prl_ekd.teachers.ensemble import TeacherEnsemble
from s3prl_ekd.teachers.speedups import SpeedupConfigError, TeacherSpeedups, call_per_length, target_agreement

LAYERS = [1, 2, 3]  # the tiny teachers have 4 layers: truncation drops the last one


@pytest.fixture(scope="module")
def ensembles(tiny_teachers):
    specs = [
        {"name": n, "upstream": "wavlm_local" if n == "wavlm" else "hubert_local", "ckpt": tiny_teachers[n]}
        for n in ("hubert", "wavlm")
    ]
    plan = TargetPlan.from_scheme("average", {s["name"]: 32 for s in specs}, layers=LAYERS)
    ref = TeacherEnsemble(specs, plan, speedups=TeacherSpeedups.reference())
    fast = TeacherEnsemble(specs, plan, speedups=TeacherSpeedups(autocast="bf16"))
    return plan, ref, fast


def _wavs(lengths, seed=0):
    g = torch.Generator().manual_seed(seed)
    wavs = [torch.randn(n, generator=g) * 0.1 for n in lengths]
    return wavs, torch.tensor([(n - 400) // 320 + 1 for n in lengths])


@contextlib.contextmanager
def switched(ensemble, speedups):
    old, ensemble.speedups = ensemble.speedups, speedups
    try:
        yield ensemble
    finally:
        ensemble.speedups = old


def test_config_defaults_and_errors():
    s = TeacherSpeedups.from_config(None)
    assert s == TeacherSpeedups() and s.padded_batch and s.inference_mode and s.truncate_layers and not s.compile
    assert s.autocast_dtype(torch.device("cpu")) is None  # auto: bf16 on CUDA only
    assert TeacherSpeedups.from_config({"autocast": "bf16"}).autocast_dtype(torch.device("cpu")) == torch.bfloat16
    assert TeacherSpeedups.from_config({"autocast": False}).autocast == "off"
    assert TeacherSpeedups().without("autocast").autocast == "off"
    assert not TeacherSpeedups().without("padded_batch").padded_batch
    with pytest.raises(SpeedupConfigError, match=r"unknown key\(s\) teacher_speedups\.bf16: valid are \['autocast', "):
        TeacherSpeedups.from_config({"bf16": True})
    with pytest.raises(SpeedupConfigError, match=r"`teacher_speedups\.autocast` must be one of \['auto', 'off', 'bf16', 'fp16'\], got 'fp8'"):
        TeacherSpeedups.from_config({"autocast": "fp8"})
    with pytest.raises(SpeedupConfigError, match=r"`teacher_speedups\.compile` must be true or false \(unquoted\), got 'yes'"):
        TeacherSpeedups.from_config({"compile": "yes"})


def test_optimised_targets_within_tolerance_of_fp32(ensembles):
    plan, ref, fast = ensembles
    assert {n: t.depth for n, t in ref.teachers.items()} == {"hubert": 4, "wavlm": 4}
    assert {n: t.depth for n, t in fast.teachers.items()} == {"hubert": 3, "wavlm": 3}
    wavs, frames = _wavs([16000, 16000, 16000])
    reference = plan.build(ref(wavs))
    optimised = plan.build(fast(wavs))
    assert all(t.dtype == torch.float32 for t in optimised)
    agree = target_agreement(reference, optimised, frames)
    assert agree["cos_min"] > 0.999, agree
    assert 0 < agree["max_rel_diff"] < 0.05, agree  # bf16 did run: not bit-identical


def test_exact_speedups_change_nothing(ensembles):
    plan, ref, fast = ensembles
    wavs, _ = _wavs([16000, 13000, 16000])
    with switched(fast, TeacherSpeedups(autocast="off", padded_batch=False)):  # inference mode + truncation
        for a, b in zip(plan.build(ref(wavs)), plan.build(fast(wavs))):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_padded_batch_equals_per_length_calls(ensembles):
    """One padded call per teacher is exact: the conv extractor's group norm and the frame mask
    follow each utterance's own length (``masked_conv.exact_lengths``)."""
    plan, ref, fast = ensembles
    exact = lambda wavs: plan.build(ref(wavs))
    with switched(fast, TeacherSpeedups(autocast="off")):  # one padded call per teacher, fp32
        padded = lambda wavs: plan.build(fast(wavs))
        for lengths in ([16000, 16000], [16000, 15800, 15500], [16000, 8000]):
            wavs, frames = _wavs(lengths)
            for a, b in zip(exact(wavs), padded(wavs)):
                for i, n in enumerate(frames.tolist()):  # fp32 sums in another order: ~1e-6
                    torch.testing.assert_close(a[i, :n], b[i, :n], rtol=1e-5, atol=1e-5)


def test_per_length_calls_equal_single_utterance_calls(ensembles):
    _, ref, _ = ensembles
    teacher = ref.teachers["hubert"]
    wavs, _ = _wavs([9000, 12000, 9000])
    with torch.no_grad():
        grouped = call_per_length(teacher, wavs)
        for i, w in enumerate(wavs):
            alone = teacher([w])
            for layer, h in zip(grouped, alone):
                torch.testing.assert_close(layer[i, : h.shape[1]], h[0], rtol=1e-5, atol=1e-5)
                assert layer[i, h.shape[1] :].abs().sum() == 0  # zero padding after the utterance


def test_inference_mode_targets_enter_the_loss_graph(ensembles):
    plan, _, fast = ensembles
    wavs, frames = _wavs([16000, 16000])
    targets = plan.build(fast(wavs))
    preds = [torch.zeros_like(t, requires_grad=True) for t in targets]
    loss, _ = DistillLoss(plan)([p + 0.1 for p in preds], targets)
    loss.backward()  # would raise "Inference tensors cannot be saved for backward" without the copy
    assert all(p.grad is not None for p in preds)
