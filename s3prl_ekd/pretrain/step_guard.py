"""Optimizer steps that never write NaN/inf into the weights.

A NaN/inf loss gives NaN/inf gradients; s3prl's Runner only catches a NaN gradient *norm*, so an
inf norm (clip coefficient 0, inf * 0 = NaN) still reaches ``optimizer.step()``. The check sits
in the optimizer's ``step`` itself, so it holds in every loop that calls it (s3prl's Runner, our
DDP runner, a ``GradScaler``): a step whose gradients are not all finite is skipped, counted in
``skipped_steps`` and logged. Under DistributedDataParallel the gradients are all-reduced before
``step``, so every rank sees the same verdict and skips the same step.
"""

from __future__ import annotations

import logging
from typing import Iterable, List

import torch

logger = logging.getLogger(__name__)

# update rounds of this process (``zero_grad`` calls, which both runners make after every update,
# stepped or not: they skip ``step`` on a NaN gradient norm) and the steps applied, all optimizers
# together: a run that applied none trained nothing, and must not report success (pretrain.launch)
STEP_TOTALS = {"rounds": 0, "applied": 0}


def nonfinite_grads(params: Iterable[torch.Tensor]) -> int:
    """How many parameters hold a NaN/inf gradient (one device sync for all of them)."""
    grads: List[torch.Tensor] = [p.grad for p in params if p.grad is not None]
    if not grads:
        return 0
    # a float64 sum is finite exactly when every element is (fp32/fp16/bf16 values cannot overflow
    # it): one reduction per tensor, where isfinite().all() makes several passes
    sums = torch.stack([g.sum(dtype=torch.float64) for g in grads])
    return int((~torch.isfinite(sums)).sum())


class SkipNonFiniteSteps:
    """Optimizer mixin: ``step()`` does nothing (and logs) when a gradient holds NaN/inf.

    Use it first in the bases: ``class MyAdamW(SkipNonFiniteSteps, torch.optim.AdamW)``.
    """

    skipped_steps: int = 0  # since this process started; the runner logs it as a scalar
    _steps_seen: int = 0

    def step(self, closure=None):  # type: ignore[override]
        self._steps_seen += 1
        bad = nonfinite_grads(p for group in self.param_groups for p in group["params"])  # type: ignore[attr-defined]
        if bad:
            self.skipped_steps += 1
            logger.warning(
                f"[step guard] optimizer step {self._steps_seen} skipped: {bad} parameter tensor(s) got a "
                f"NaN/inf gradient (a NaN/inf loss?); weights unchanged. {self.skipped_steps} step(s) skipped "
                "so far: if this repeats, lower the lr, use bf16 instead of fp16, or check the data"
            )
            return None
        STEP_TOTALS["applied"] += 1
        return super().step(closure)  # type: ignore[misc]

    def zero_grad(self, set_to_none: bool = True) -> None:  # type: ignore[override]
        STEP_TOTALS["rounds"] += 1
        super().zero_grad(set_to_none)  # type: ignore[misc]
