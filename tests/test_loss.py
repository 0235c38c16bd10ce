import math

import pytest
import torch
import torch.nn.functional as F

from s3prl_ekd.distill.loss import DistillLoss, frame_mask_from_lengths
from s3prl_ekd.distill.targets import TargetPlan


def test_loss_by_hand_on_known_tensors():
    plan = TargetPlan.from_scheme("single", {"t": 2}, layers=[4])
    p = torch.tensor([[[1.0, 0.0], [0.0, 2.0]]])  # B=1, T=2, D=2
    h = torch.tensor([[[0.0, 1.0], [0.0, 1.0]]])
    loss, rec = DistillLoss(plan)([p], [h])
    l1 = (1 + 1 + 0 + 1) / 4
    cos = (-math.log(1 / (1 + math.exp(-0.0))) - math.log(1 / (1 + math.exp(-1.0)))) / 2
    assert rec["t/L4/l1"].item() == pytest.approx(l1)
    assert rec["t/L4/cos"].item() == pytest.approx(cos)
    assert loss.item() == pytest.approx(l1 + cos)


def test_equals_s3prl_distiller_objective_on_equal_lengths():
    """s3prl's pretrain/distiller objective: means over B, N, T (, D); padding not masked."""
    plan = TargetPlan.from_scheme("single", {"t": 8})
    pred = torch.randn(3, 3, 10, 8)  # B x N x T x D
    tgt = torch.randn(3, 3, 10, 8)
    rec = (pred - tgt).abs().mean()
    sim = -F.logsigmoid(F.cosine_similarity(pred, tgt, dim=-1)).mean()
    ours, _ = DistillLoss(plan)(list(pred.unbind(1)), list(tgt.unbind(1)))
    torch.testing.assert_close(ours, rec + sim)


def test_padding_is_masked_and_weights_apply():
    plan = TargetPlan.from_scheme("multihead", {"a": 4, "b": 4}, layers=[1], teacher_weights={"a": 3, "b": 1})
    p = [torch.randn(2, 5, 4) for _ in range(2)]
    h = [torch.randn(2, 5, 4) for _ in range(2)]
    mask = frame_mask_from_lengths(torch.tensor([5, 3]), 5)
    loss, rec = DistillLoss(plan)(p, h, mask)
    # garbage in padded frames must not matter
    p2 = [x.clone() for x in p]
    p2[0][1, 3:] = 1e6
    loss2, _ = DistillLoss(plan)(p2, h, mask)
    torch.testing.assert_close(loss, loss2)
    assert loss.item() == pytest.approx((3 * rec["a/L1/loss"].item() + rec["b/L1/loss"].item()) / 4, rel=1e-5)
    valid = torch.cat([p[0][0], p[0][1, :3]]), torch.cat([h[0][0], h[0][1, :3]])
    assert rec["a/L1/l1"].item() == pytest.approx((valid[0] - valid[1]).abs().mean().item(), rel=1e-5)
