"""What the exact (masked) group norm of the conv extractor's first layer costs, forward + backward.

    python bench/masked_group_norm.py --batch 2 --channels 512 --frames 3840 --shorter 0.7 --repeats 7

Times, on one padded batch (the last utterances ``--shorter`` times the first's length):
``masked`` (``s3prl_ekd.distill.masked_conv.masked_group_norm``: torch's fused ``group_norm`` on
each utterance's valid frames), ``elementwise`` (the same statistics masked with element-wise
tensor ops, a reference written here) and ``unmasked`` (``nn.GroupNorm`` over the padded batch,
what s3prl computes, inexact for the shorter rows). Medians of ``--repeats`` runs, in rounds that
interleave the three, 1 thread; also the largest difference of ``masked`` vs ``elementwise``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from s3prl_ekd.distill.masked_conv import masked_group_norm, valid_mask


def elementwise_group_norm(x: torch.Tensor, frames: torch.Tensor, norm: nn.GroupNorm) -> torch.Tensor:
    """Reference: each row's mean and variance over its valid frames with element-wise ops."""
    b, c, t = x.shape
    g = norm.num_groups
    pad = ~valid_mask(frames, t)[:, None, None, :]
    xf = x.float().reshape(b, g, c // g, t)
    count = (frames.clamp(min=1) * (c // g)).to(xf.dtype)[:, None, None, None]
    mean = xf.masked_fill(pad, 0.0).sum((2, 3), keepdim=True) / count
    var = (xf - mean).masked_fill(pad, 0.0).pow(2).sum((2, 3), keepdim=True) / count
    y = (xf - mean) * torch.rsqrt(var + norm.eps)
    y = y.reshape(b, c, t) * norm.weight[None, :, None] + norm.bias[None, :, None]
    return y.masked_fill(pad.reshape(b, 1, t), 0.0).to(x.dtype)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--channels", type=int, default=512)
    p.add_argument("--frames", type=int, default=3840)
    p.add_argument("--shorter", type=float, default=0.7)
    p.add_argument("--repeats", type=int, default=7)
    args = p.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    norm = nn.GroupNorm(args.channels, args.channels)
    frames = torch.tensor([args.frames] + [int(args.frames * args.shorter)] * (args.batch - 1))
    x0 = torch.randn(args.batch, args.channels, args.frames)
    paths = {
        "masked": lambda x: masked_group_norm(x, frames, norm),
        "elementwise": lambda x: elementwise_group_norm(x, frames, norm),
        "unmasked": norm,
    }

    def run(fn):
        x = x0.clone().requires_grad_(True)
        y = fn(x)
        y.square().mean().backward()
        return y.detach()

    keep = valid_mask(frames, args.frames)[:, None, :]
    diff = (run(paths["masked"]) - run(paths["elementwise"])).abs().masked_select(keep).max().item()
    times = {name: [] for name in paths}
    for _ in range(args.repeats):
        for name, fn in paths.items():
            t0 = time.perf_counter()
            run(fn)
            times[name].append(time.perf_counter() - t0)
    for name, ts in times.items():
        print(f"{name:12s} {statistics.median(ts) * 1000:8.1f} ms")
    print(f"max |masked - elementwise| on valid frames: {diff:.2e}")


if __name__ == "__main__":
    main()
