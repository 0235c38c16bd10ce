"""EKDAdamW + EKDLinearWarmup reproduce s3prl's AdamW_with_schedule, the distiller recipe's optimizer."""

import copy

import pytest
import torch
from torch import nn

from s3prl_ekd.pretrain.optim import get_EKDAdamW, get_EKDLinearWarmup, recipe_lr_factor


class Block(nn.Module):
    """Names as in the student: linear weights and biases, a layer norm, a bias-free conv."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(1, 4, 3, bias=False)
        self.fc1 = nn.Linear(4, 8)
        self.final_layer_norm = nn.LayerNorm(8)
        self.fc2 = nn.Linear(8, 3)


def run_updates(model, optimizer, scheduler, grads):
    for step_grads in grads:
        for p, g in zip(model.parameters(), step_grads):
            p.grad = g.clone()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()


@pytest.mark.parametrize("lr", [2e-4, 5e-2])
def test_updates_equal_s3prl_adamw_with_schedule(lr):
    """The same weights and gradients through s3prl's own optimizer (Lamb in Adam mode, its
    warm-up schedule) and ours give the same parameters, across the warm-up/decay turn."""
    from s3prl.optimizers import get_AdamW_with_schedule

    torch.manual_seed(0)
    ours_model = Block()
    with torch.no_grad():  # a layer norm away from its init, so its weight decay shows
        ours_model.final_layer_norm.weight.normal_()
    theirs_model = copy.deepcopy(ours_model)
    start = [p.detach().clone() for p in ours_model.parameters()]
    total, steps = 50, 8  # warm-up of 3.5 updates: updates 1-3 warm up, 4-8 decay
    grads = [[torch.randn_like(p) for p in ours_model.parameters()] for _ in range(steps)]

    # s3prl's distiller config: weight_decay 1e-6, which its parameter groups override
    theirs = get_AdamW_with_schedule([theirs_model], lr=lr, total_steps=total, warmup_proportion=0.07,
                                     betas=[0.9, 0.98], eps=1e-6, weight_decay=1e-6)
    ours = get_EKDAdamW([ours_model], total_steps=total, lr=lr, betas=[0.9, 0.98], eps=1e-6)
    sched = get_EKDLinearWarmup(ours, total, warmup_proportion=0.07)
    assert ours.get_lr()[0] == pytest.approx(lr / 3.5)  # update 1 already learns, as s3prl's
    run_updates(theirs_model, theirs, None, grads)
    run_updates(ours_model, ours, sched, grads)

    for (name, a), b, p0 in zip(ours_model.named_parameters(), theirs_model.parameters(), start):
        # the same float32 operations but for the order of two scalar products: ~1 ulp per update
        torch.testing.assert_close(a - p0, b - p0, atol=1e-9, rtol=1e-5, msg=name)
        assert not torch.equal(a, p0)


def test_weight_decay_spares_biases_only():
    """0.01 on every weight (layer norms too: s3prl's name filter misses them), 0 on biases;
    ``no_decay: []`` with 1e-6 is the nominal reading of s3prl's config."""
    model = Block()
    opt = get_EKDAdamW([model])
    decayed, spared = (group["params"] for group in opt.param_groups)
    names = {id(p): n for n, p in model.named_parameters()}
    assert [g["weight_decay"] for g in opt.param_groups] == [0.01, 0.0]
    assert sorted(names[id(p)] for p in spared) == ["fc1.bias", "fc2.bias", "final_layer_norm.bias"]
    assert "final_layer_norm.weight" in {names[id(p)] for p in decayed}
    nominal = get_EKDAdamW([model], weight_decay=1e-6, no_decay=[])
    assert [g["weight_decay"] for g in nominal.param_groups] == [1e-6, 0.0]
    assert len(nominal.param_groups[0]["params"]) == len(list(model.parameters()))


def test_schedule_is_s3prls_warmup_linear():
    # s3prl's WarmupLinearSchedule at update k of T, warm-up w: k/(wT) while k/T < w, then (1 - k/T)/(1 - w)
    assert recipe_lr_factor(1, 200000, 0.07) == pytest.approx(1 / 14000)
    assert recipe_lr_factor(14000, 200000, 0.07) == pytest.approx(1.0)
    assert recipe_lr_factor(107000, 200000, 0.07) == pytest.approx(0.5)
    assert recipe_lr_factor(200000, 200000, 0.07) == 0.0
    with pytest.raises(ValueError, match="warmup_proportion"):
        get_EKDLinearWarmup(get_EKDAdamW([Block()]), 100, warmup_proportion=1.5)
