"""The distillation objective: per target, L1 plus -log sigmoid(cosine), padding masked out."""

from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from s3prl_ekd.distill.masked_conv import valid_mask as frame_mask_from_lengths  # noqa: F401 (the loss mask, by its old name)
from s3prl_ekd.distill.targets import TargetPlan


class DistillLoss(nn.Module):
    """``L_t = mean|p - h| + cosine_weight * mean(-log sigmoid(cos(p, h)))``; total = weighted mean over targets.

    Means run over valid frames (and features, for L1) of the whole batch, so on a batch of
    equal-length utterances this is exactly s3prl's distiller objective (``loss_type: l1``,
    ``cosine_loss: 1``), whose means run over B, N, T (and D).
    """

    def __init__(self, plan: TargetPlan, l1_weight: float = 1.0, cosine_weight: float = 1.0):
        super().__init__()
        self.plan = plan
        self.l1_weight = float(l1_weight)
        self.cosine_weight = float(cosine_weight)  # lambda = 1 in DistilHuBERT

    def forward(
        self,
        predictions: Sequence[torch.Tensor],
        targets: Sequence[torch.Tensor],
        frame_mask: Optional[torch.Tensor] = None,
    ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        """``predictions``/``targets``: one B x T x D tensor per plan target (same T);
        ``frame_mask``: B x T, True on valid frames. Returns (loss, records) where records are
        detached scalars named ``{target name}/l1``, ``{target name}/cos``, ``{target name}/loss``."""
        if len(predictions) != len(self.plan) or len(targets) != len(self.plan):
            raise ValueError(
                f"the plan has {len(self.plan)} targets but got {len(predictions)} predictions "
                f"and {len(targets)} targets"
            )
        records: Dict[str, torch.Tensor] = {}
        total = predictions[0].new_zeros(())
        weight_sum = 0.0
        for target, pred, tgt in zip(self.plan.targets, predictions, targets):
            if pred.shape != tgt.shape:
                raise ValueError(f"target {target.name}: prediction {tuple(pred.shape)} != target {tuple(tgt.shape)}")
            pred = pred.float()
            tgt = tgt.float()
            if frame_mask is None:
                mask = torch.ones(pred.shape[:2], dtype=torch.bool, device=pred.device)
            else:
                mask = frame_mask[:, : pred.shape[1]]
            n_frames = mask.sum().clamp(min=1)
            l1 = ((pred - tgt).abs().mean(-1) * mask).sum() / n_frames
            cos = (-F.logsigmoid(F.cosine_similarity(pred, tgt, dim=-1)) * mask).sum() / n_frames
            loss_t = self.l1_weight * l1 + self.cosine_weight * cos
            total = total + target.weight * loss_t
            weight_sum += target.weight
            records[f"{target.name}/l1"] = l1.detach()
            records[f"{target.name}/cos"] = cos.detach()
            records[f"{target.name}/loss"] = loss_t.detach()
        total = total / weight_sum
        return total, records


