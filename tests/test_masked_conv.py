"""One conv-extractor call on a padded batch gives each utterance its features alone."""

import torch
from torch import nn

from s3prl_ekd.distill.masked_conv import masked_group_norm
from s3prl_ekd.distill.student import EKDStudent
from s3prl_ekd.distill.targets import TargetPlan

# fp32 sums over a few hundred frames in another order than GroupNorm's kernel: ~1e-6 apart
TOL = 1e-5


def test_masked_group_norm_is_group_norm_of_the_valid_frames():
    norm = nn.GroupNorm(2, 4, affine=True)
    nn.init.normal_(norm.weight)
    nn.init.normal_(norm.bias)
    x = torch.randn(3, 4, 50)
    frames = torch.tensor([50, 31, 7])
    out = masked_group_norm(x, frames, norm)
    for b, n in enumerate(frames.tolist()):
        torch.testing.assert_close(out[b, :, :n], norm(x[b : b + 1, :, :n])[0], atol=TOL, rtol=TOL)
        assert torch.isfinite(out[b]).all()
    assert out[1, :, 31:].abs().sum() == 0 and out[2, :, 7:].abs().sum() == 0  # padding: zeros
    full = torch.full((3,), 50)  # no row padded: the batch's own GroupNorm
    torch.testing.assert_close(masked_group_norm(x, full, norm), norm(x), atol=TOL, rtol=TOL)


def test_padded_batch_one_call_equals_each_alone(tiny_student_config):
    """4 distinct lengths: the batch's features (and the conv weights' gradients) equal each
    utterance alone, with the conv extractor called once for the batch."""
    student = EKDStudent(tiny_student_config, TargetPlan.from_scheme("single", {"a": 32})).eval()
    calls = []
    student.feature_extractor.register_forward_hook(lambda *args: calls.append(1))
    lengths = [16000, 12345, 7001, 4000]
    wavs = [torch.randn(n) for n in lengths]

    batch = student(wavs)
    assert len(calls) == 1
    batch_loss = sum(h[b, : int(batch.frame_lengths[b])].pow(2).sum() for h in batch.hidden_states for b in range(4))
    batch_loss.backward()
    batch_grads = [p.grad.clone() for p in student.feature_extractor.parameters()]

    student.zero_grad()
    alone_loss = 0.0
    for b, wav in enumerate(wavs):
        alone = student([wav])
        n = int(alone.frame_lengths[0])
        assert n == int(batch.frame_lengths[b])
        for a, h in zip(alone.hidden_states + alone.predictions, batch.hidden_states + batch.predictions):
            torch.testing.assert_close(h[b, :n], a[0], atol=TOL, rtol=TOL)
        alone_loss = alone_loss + sum(h[0].pow(2).sum() for h in alone.hidden_states)
    assert len(calls) == 1 + 4
    alone_loss.backward()
    for g_batch, p in zip(batch_grads, student.feature_extractor.parameters()):
        # gradients are sums over many frames of both signs: relative tolerance
        torch.testing.assert_close(g_batch, p.grad, atol=1e-4, rtol=1e-4)


def test_without_exact_padding_the_padding_joins_the_statistics(tiny_student_config):
    """``exact_padding: false`` is s3prl's plain padded call: the short utterance's features move."""
    student = EKDStudent({**tiny_student_config, "exact_padding": False}, TargetPlan.from_scheme("single", {"a": 32}))
    student.eval()
    short, long = torch.randn(6000), torch.randn(16000)
    with torch.no_grad():
        alone = student([short]).hidden_states[0][0]
        batched = student([long, short]).hidden_states[0][1, : alone.shape[0]]
    assert (alone - batched).abs().max() > 1e-3


def test_teacher_padded_batch_is_each_utterance_alone(tiny_teachers):
    """HuBERT and WavLM as s3prl builds them (files unedited): one padded call, 4 distinct lengths,
    each utterance's hidden states as alone, the conv extractor called once for the batch."""
    from s3prl_ekd.teachers.ensemble import TeacherEnsemble

    specs = [{"name": n, "upstream": f"{n}_local", "ckpt": tiny_teachers[n]} for n in ("hubert", "wavlm")]
    ensemble = TeacherEnsemble(specs, speedups={"autocast": "off", "padded_batch": True})
    g = torch.Generator().manual_seed(0)
    wavs = [0.1 * torch.randn(n, generator=g) for n in (16000, 12345, 7001, 4000)]
    for name, teacher in ensemble.teachers.items():
        calls = []
        hook = teacher.expert.model.feature_extractor.register_forward_hook(lambda *args: calls.append(1))
        with torch.no_grad():
            batch = teacher(wavs)
            assert len(calls) == 1
            for i, wav in enumerate(wavs):
                for layer, (b, a) in enumerate(zip(batch, teacher([wav]))):
                    torch.testing.assert_close(b[i, : a.shape[1]], a[0], atol=TOL, rtol=TOL, msg=f"{name} layer {layer}")
        hook.remove()
