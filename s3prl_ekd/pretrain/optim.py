"""The recipe's optimizer and schedule, made known to s3prl's ``get_optimizer`` / ``get_scheduler``
(by :func:`s3prl_ekd.s3prl_compat.pretrain_runner.register_optimizers`).

s3prl looks optimizers up by name (``eval(f"get_{name}")`` in ``s3prl/optimizers.py``). The
distiller recipe (DistilHuBERT, and the EKD students after it) ran s3prl's ``AdamW_with_schedule``:
its ``Lamb`` in Adam mode, whose parameter groups override the configured weight decay (1e-6)
with **0.01 for every parameter whose name holds no "bias"** (LayerNorm weights included) and 0
for biases, and whose schedule gives update 1 the lr ``lr / (warmup_proportion * total_steps)``.
Its state holds a schedule object that ``torch.load(weights_only=True)`` refuses, so resuming
breaks under torch >= 2.6; and it reads the step size through per-parameter host syncs.

``EKDAdamW`` makes the same update (``RecipeAdamW``: the bias correction scales the whole step,
weight decay included, and eps is added to the uncorrected root of the second moment) on the
same groups (``weight_decay`` on all but the names holding an entry of ``no_decay``), and
``EKDLinearWarmup`` is the same schedule, update 1 included. Both checkpoint as plain data;
steps whose gradients hold NaN/inf are skipped (``step_guard``). The nominal reading of s3prl's
config, 1e-6 on every parameter, is ``weight_decay: 1.e-6, no_decay: []``.

s3prl's Runner builds a resumed scheduler after loading the optimizer: a torch scheduler's
constructor then resets every group's lr to the lr of its first step, and ``load_state_dict``
does not restore it, so the first update after a resume would use the wrong lr.
``EKDLinearWarmup`` puts the checkpoint's lr back when its state is loaded.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Iterable, List, Sequence

import torch
from torch.optim.lr_scheduler import LambdaLR

from s3prl_ekd.pretrain.step_guard import SkipNonFiniteSteps

# s3prl's get_grouped_parameters: names holding one of these get no weight decay
S3PRL_NO_DECAY = ("bias",)


class LambAdamUpdate(torch.optim.Optimizer):
    """The update of s3prl's ``AdamW_with_schedule`` (``Lamb(adam=True, correct_bias=True)``), with
    the lr its schedule would apply already in each group's ``lr``; plain-data state, no host sync."""

    def __init__(self, params, lr: float = 2e-4, betas: Sequence[float] = (0.9, 0.98), eps: float = 1e-6, weight_decay: float = 0.01):
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        """One update of every parameter that has a gradient."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            by_step = defaultdict(list)  # parameters that stepped equally often share a step size
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                by_step[state["step"]].append(p)
            for step, params in by_step.items():
                grads = [p.grad for p in params]
                exp_avg = [self.state[p]["exp_avg"] for p in params]
                exp_avg_sq = [self.state[p]["exp_avg_sq"] for p in params]
                torch._foreach_mul_(exp_avg, beta1)
                torch._foreach_add_(exp_avg, grads, alpha=1 - beta1)
                torch._foreach_mul_(exp_avg_sq, beta2)
                torch._foreach_addcmul_(exp_avg_sq, grads, grads, value=1 - beta2)
                denom = torch._foreach_sqrt(exp_avg_sq)
                torch._foreach_add_(denom, group["eps"])  # eps on the uncorrected root, as s3prl
                update = torch._foreach_div(exp_avg, denom)
                if group["weight_decay"] != 0:
                    torch._foreach_add_(update, params, alpha=group["weight_decay"])
                # the bias correction scales the whole step, weight decay included, as s3prl
                step_size = group["lr"] * math.sqrt(1.0 - beta2**step) / (1.0 - beta1**step)
                torch._foreach_add_(params, update, alpha=-step_size)
        return loss


class RecipeAdamW(SkipNonFiniteSteps, LambAdamUpdate):
    """``LambAdamUpdate`` with the ``get_lr()`` s3prl's Runner logs; steps with NaN/inf gradients are skipped."""

    def get_lr(self) -> List[float]:
        return [float(g["lr"]) for g in self.param_groups]


class ResumableLambdaLR(LambdaLR):
    """``LambdaLR`` whose ``load_state_dict`` also restores the optimizer's current lr."""

    def load_state_dict(self, state_dict) -> None:
        super().load_state_dict(state_dict)
        for group, lr in zip(self.optimizer.param_groups, self._last_lr):
            group["lr"] = lr


def decay_groups(model_params: Iterable[torch.nn.Module], weight_decay: float, no_decay: Sequence[str]) -> List[dict]:
    """Trainable parameters in two groups: ``weight_decay`` for names holding no entry of
    ``no_decay``, 0 for the others (s3prl's ``get_grouped_parameters`` rule)."""
    named = [(n, p) for m in model_params for n, p in m.named_parameters() if p.requires_grad]
    exempt = [any(s in n for s in no_decay) for n, _ in named]
    return [
        {"params": [p for (_, p), e in zip(named, exempt) if not e], "weight_decay": float(weight_decay)},
        {"params": [p for (_, p), e in zip(named, exempt) if e], "weight_decay": 0.0},
    ]


def get_EKDAdamW(  # noqa: N802 (s3prl's naming: get_<optimizer name>)
    model_params: Iterable[torch.nn.Module],
    total_steps: int = 0,
    lr: float = 2e-4,
    betas: Sequence[float] = (0.9, 0.98),
    eps: float = 1e-6,
    weight_decay: float = 0.01,
    no_decay: Sequence[str] = S3PRL_NO_DECAY,
) -> RecipeAdamW:
    """s3prl's ``AdamW_with_schedule`` update over the trainable parameters (the recipe's values)."""
    groups = decay_groups(list(model_params), weight_decay, tuple(no_decay or ()))
    return RecipeAdamW(groups, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)


def recipe_lr_factor(update: int, num_training_steps: int, warmup_proportion: float) -> float:
    """s3prl's ``WarmupLinearSchedule`` at ``update`` (1 for the first): linear warm-up over
    ``warmup_proportion`` of the steps, then linear decay to 0."""
    progress = update / num_training_steps
    if progress < warmup_proportion:
        return progress / warmup_proportion
    return max((progress - 1.0) / (warmup_proportion - 1.0), 0.0)


def get_EKDLinearWarmup(  # noqa: N802
    optimizer: torch.optim.Optimizer, num_training_steps: int, warmup_proportion: float = 0.07
) -> LambdaLR:
    """s3prl's distiller schedule: update k uses ``lr * recipe_lr_factor(k)`` (paper: 7 % warm-up)."""
    if num_training_steps < 1 or not 0.0 < warmup_proportion < 1.0:
        raise ValueError(
            f"EKDLinearWarmup needs total steps >= 1 and 0 < warmup_proportion < 1, got "
            f"{num_training_steps} and {warmup_proportion}: fix runner.total_steps or scheduler.warmup_proportion"
        )
    # LambdaLR's step k (k schedulers steps done) sets the lr of update k + 1
    return ResumableLambdaLR(optimizer, lambda k: recipe_lr_factor(k + 1, num_training_steps, warmup_proportion))
