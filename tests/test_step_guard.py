import logging

import pytest
import torch

from s3prl_ekd.pretrain.step_guard import SkipNonFiniteSteps, nonfinite_grads


class GuardedAdamW(SkipNonFiniteSteps, torch.optim.AdamW):
    pass


def _model():
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.GELU(), torch.nn.Linear(8, 1))


def _snapshot(model):
    return [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("poison", ["nan_loss", "inf_loss", "inf_input"])
def test_nonfinite_step_is_skipped_and_logged(poison, caplog):
    model = _model()
    opt = GuardedAdamW(model.parameters(), lr=1e-2, weight_decay=1e-2)
    x = torch.randn(16, 4)
    # one good step first: AdamW then has momentum that a skipped step must not apply either
    model(x).pow(2).mean().backward()
    opt.step()
    opt.zero_grad()
    before = _snapshot(model)
    state_before = {k: v.clone() for k, v in opt.state[next(model.parameters())].items()}

    if poison == "inf_input":
        x = x.clone()
        x[0, 0] = float("inf")
    loss = model(x).pow(2).mean()
    loss = loss * float("nan") if poison == "nan_loss" else (loss * float("inf") if poison == "inf_loss" else loss)
    loss.backward()
    # s3prl's loop clips before stepping: an inf norm turns grads into NaN/0, never caught by isnan(norm) alone
    torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
    assert nonfinite_grads(model.parameters()) > 0
    with caplog.at_level(logging.WARNING, logger="s3prl_ekd.pretrain.step_guard"):
        opt.step()
    opt.zero_grad()
    assert opt.skipped_steps == 1
    assert "optimizer step 2 skipped" in caplog.text and "NaN/inf gradient" in caplog.text
    for a, b in zip(before, model.parameters()):
        assert torch.equal(a, b) and torch.isfinite(b).all()
    for k, v in opt.state[next(model.parameters())].items():
        assert torch.equal(v, state_before[k])  # step count and moments untouched

    # training goes on from there
    model(torch.randn(16, 4)).pow(2).mean().backward()
    opt.step()
    assert opt.skipped_steps == 1
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_guard_under_grad_scaler_state_dict_is_plain():
    model = _model()
    opt = GuardedAdamW(model.parameters(), lr=1e-2)
    scaler = torch.amp.GradScaler("cpu", enabled=True)
    loss = model(torch.randn(4, 4)).sum() * float("inf")
    scaler.scale(loss).backward()
    scaler.unscale_(opt)
    scaler.step(opt)  # the scaler sees the inf and does not call step; nothing breaks
    scaler.update()
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert "skipped_steps" not in opt.state_dict()  # the checkpoint format is unchanged


def test_nonfinite_grads_counts_exactly_the_tensors_with_nan_or_inf():
    """Huge finite gradients (whose fp32 sum would overflow) are finite; inf, -inf, NaN and
    inf with -inf in one tensor are not; fp16 and bf16 gradients alike."""
    grads = [
        torch.full((1000,), 3.0e38),  # finite, sums far past fp32's range
        torch.tensor([1.0, float("inf")]),
        torch.tensor([-float("inf"), 2.0]),
        torch.tensor([float("nan")]),
        torch.tensor([float("inf"), -float("inf")]),
        torch.full((10,), 65504.0, dtype=torch.float16),  # fp16's largest value
        torch.full((10,), 3.0e38, dtype=torch.bfloat16),
        torch.tensor([float("inf")], dtype=torch.bfloat16),
    ]
    params = []
    for g in grads:
        p = torch.zeros_like(g, requires_grad=True)
        p.grad = g
        params.append(p)
    assert nonfinite_grads(params) == 5
    assert nonfinite_grads([params[0], params[5], params[6]]) == 0
