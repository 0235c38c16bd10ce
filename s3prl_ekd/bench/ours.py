"""The project's training path as the benchmark runs it: the pretrain expert's step (teachers
with their speed-ups, student, loss), then the update the DDP runner makes (fp16 autocast and
gradient scaling on GPU, clipping at 5, the recipe's AdamW: ``EKDAdamW``)."""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from s3prl_ekd.bench.s3prl_style import GRAD_CLIP
from s3prl_ekd.pretrain.optim import get_EKDAdamW


class OursStep:
    """One update of :class:`~s3prl_ekd.pretrain.ekd.pretrain_expert.UpstreamPretrainExpert`."""

    def __init__(self, expert: nn.Module, device: torch.device, student_dtype: Optional[torch.dtype] = None):
        self.expert = expert.to(device).train()
        self.device = device
        self.student_dtype = student_dtype
        self.optimizer = get_EKDAdamW([expert.student])  # the shipped runner config's (s3prl's recipe)
        self.scaler = torch.amp.GradScaler(device.type, enabled=student_dtype == torch.float16)
        self.global_step = 0

    def __call__(self, batch) -> torch.Tensor:
        self.global_step += 1
        with torch.autocast(self.device.type, dtype=self.student_dtype or torch.float32, enabled=self.student_dtype is not None):
            loss, _ = self.expert(batch, records=None, global_step=self.global_step)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        nn.utils.clip_grad_norm_(self.expert.student.parameters(), GRAD_CLIP)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        return loss.detach()  # not read on the host: the step leaves the device queue alone
