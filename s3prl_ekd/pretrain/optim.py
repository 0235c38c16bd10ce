"""The paper's optimizer and schedule, made known to s3prl's ``get_optimizer`` / ``get_scheduler``.

s3prl looks optimizers up by name (``eval(f"get_{name}")`` in ``s3prl/optimizers.py``). Its
``AdamW_with_schedule`` (DistilHuBERT's) overrides the configured weight decay with 0.01 on its
parameter groups, and its state holds a schedule object that ``torch.load(weights_only=True)``
refuses, so resuming breaks under torch >= 2.6. ``EKDAdamW`` is torch's AdamW with exactly the
configured values, plus the ``get_lr()`` s3prl's Runner logs, and it skips any step whose
gradients hold NaN/inf (``step_guard``); ``EKDLinearWarmup`` is a linear
warm-up over a proportion of the steps, then a linear decay to 0. Both checkpoint as plain data.

s3prl's Runner builds a resumed scheduler after loading the optimizer: a torch scheduler's
constructor then resets every group's lr to the lr of step 0 (0 under warm-up), and
``load_state_dict`` does not restore it, so the first update after a resume would be lost.
``EKDLinearWarmup`` puts the checkpoint's lr back when its state is loaded.
"""

from __future__ import annotations

from typing import Iterable, List, Sequence

import torch
from torch.optim.lr_scheduler import LambdaLR

from ..step_guard import SkipNonFiniteSteps


class AdamWWithLr(SkipNonFiniteSteps, torch.optim.AdamW):
    """torch's AdamW with the ``get_lr()`` s3prl's Runner logs; steps with NaN/inf gradients are skipped."""

    def get_lr(self) -> List[float]:
        return [float(g["lr"]) for g in self.param_groups]


class ResumableLambdaLR(LambdaLR):
    """``LambdaLR`` whose ``load_state_dict`` also restores the optimizer's current lr."""

    def load_state_dict(self, state_dict) -> None:
        super().load_state_dict(state_dict)
        for group, lr in zip(self.optimizer.param_groups, self._last_lr):
            group["lr"] = lr


def get_EKDAdamW(  # noqa: N802 (s3prl's naming: get_<optimizer name>)
    model_params: Iterable[torch.nn.Module],
    total_steps: int = 0,
    lr: float = 2e-4,
    betas: Sequence[float] = (0.9, 0.98),
    eps: float = 1e-6,
    weight_decay: float = 1e-6,
) -> AdamWWithLr:
    """AdamW over the trainable parameters of ``model_params`` (paper defaults)."""
    params = [p for m in model_params for p in m.parameters() if p.requires_grad]
    return AdamWWithLr(params, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay)


def get_EKDLinearWarmup(  # noqa: N802
    optimizer: torch.optim.Optimizer, num_training_steps: int, warmup_proportion: float = 0.07
) -> LambdaLR:
    """Linear warm-up over ``warmup_proportion`` of the steps, then linear decay to 0 (paper: 7 %)."""
    warmup = max(1, int(round(warmup_proportion * num_training_steps)))

    def factor(step: int) -> float:
        if step < warmup:
            return step / warmup
        return max(0.0, (num_training_steps - step) / max(1, num_training_steps - warmup))

    return ResumableLambdaLR(optimizer, factor)


def register_with_s3prl() -> None:
    """Add ``EKDAdamW`` and ``EKDLinearWarmup`` to s3prl's optimizer and scheduler name spaces."""
    from s3prl import optimizers, schedulers

    optimizers.get_EKDAdamW = get_EKDAdamW
    schedulers.get_EKDLinearWarmup = get_EKDLinearWarmup
