"""The reference step: what s3prl's distiller pretrain expert does, extended to K teachers.

s3prl (``pretrain/distiller/pretrain_expert.py``) runs the student on the padded batch, then each
teacher, in fp32 with autocast off under ``no_grad``, on the list of unpadded waveforms (its
``UpstreamExpert`` pads them and computes every layer), stacks the target layers, and takes an
unmasked L1 + cosine loss; the Runner then clips gradients at 5 and steps the optimizer.
"""

from __future__ import annotations

import contextlib
from typing import Dict, List, Mapping, Optional

import torch
from torch import nn

from s3prl_ekd.distill.loss import DistillLoss
from s3prl_ekd.distill.student import EKDStudent
from s3prl_ekd.distill.targets import TargetPlan, align_frames

GRAD_CLIP = 5.0  # s3prl config_runner.yaml `gradient_clipping`


def paper_optimizer(student: nn.Module) -> torch.optim.Optimizer:
    """AdamW as DistilHuBERT: lr 2e-4, betas (0.9, 0.98), eps 1e-6, weight decay 1e-6."""
    return torch.optim.AdamW(student.parameters(), lr=2e-4, betas=(0.9, 0.98), eps=1e-6, weight_decay=1e-6)


def student_autocast(device: torch.device, dtype: Optional[torch.dtype]):
    """Autocast for the student's forward (s3prl's Runner uses fp16 on GPU); a no-op for fp32."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


class S3prlStyleStep:
    """One s3prl-style training step with K teachers called one after another."""

    def __init__(
        self,
        teachers: Mapping[str, nn.Module],
        student: EKDStudent,
        plan: TargetPlan,
        device: torch.device,
        student_dtype: Optional[torch.dtype] = None,
    ):
        self.teachers = dict(teachers)
        self.student = student.to(device).train()
        self.plan = plan
        self.device = device
        self.loss = DistillLoss(plan)
        self.optimizer = paper_optimizer(self.student)
        self.student_dtype = student_dtype
        self.scaler = torch.amp.GradScaler(device.type, enabled=student_dtype == torch.float16)

    def teacher_hidden(self, wavs: List[torch.Tensor]) -> Dict[str, List[torch.Tensor]]:
        """Every teacher, fp32, on the list of waveforms: s3prl's ``self.teacher(wave_orig)``."""
        hidden = {}
        with torch.no_grad(), torch.autocast(self.device.type, enabled=False):
            for name, teacher in self.teachers.items():
                hidden[name] = teacher(wavs)["hidden_states"]
        return hidden

    def __call__(self, batch) -> float:
        """One update on a loader batch (padded ``wavs`` B x L and ``lengths``)."""
        wave_input = batch.wavs.to(self.device, non_blocking=True)
        lengths = batch.lengths.to(self.device)
        wave_orig = [w[:n] for w, n in zip(wave_input, lengths.tolist())]
        with student_autocast(self.device, self.student_dtype):
            out = self.student(wave_input, lengths)
        hidden = self.teacher_hidden(wave_orig)
        flat = [h for name in self.plan.teachers() for h in hidden[name]]
        cropped, _ = align_frames(list(out.predictions) + flat)
        preds, rest = cropped[: len(out.predictions)], cropped[len(out.predictions) :]
        it = iter(rest)
        hidden = {name: [next(it) for _ in hidden[name]] for name in self.plan.teachers()}
        loss, _ = self.loss(preds, self.plan.build(hidden), None)  # s3prl masks no padding
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        nn.utils.clip_grad_norm_(self.student.parameters(), GRAD_CLIP)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())
