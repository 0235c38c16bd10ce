"""Cost of exact padding in the conv feature extractor: per-length calls vs one masked call.

HuBERT Base's conv stack (the student's and the teachers'), on one padded batch of distinct
lengths: ``per-length`` runs each utterance unpadded (the exact way before the masked group
norm), ``masked`` is one call with each utterance normalised over its own frames
(:mod:`s3prl_ekd.distill.masked_conv`), ``plain`` one call whose group norm sees the padding (s3prl's,
inexact). Forward and backward as the student trains, or forward only under ``no_grad`` as the
teachers run. Prints a Markdown table: median seconds over the timed repeats, and the largest
difference from ``per-length`` on the valid frames.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Callable, List, Optional

import torch

from s3prl_ekd.bench.lengths import near_crop_lengths
from s3prl_ekd.distill.masked_conv import MaskedConvFeatureExtractor, conv_frames
from s3prl_ekd.distill.student import conv_layers, make_student_config
from s3prl_ekd.io import SAMPLE_RATE


def _per_length(extractor, wavs: torch.Tensor, lengths: List[int]) -> torch.Tensor:
    out = None
    for length in sorted(set(lengths)):
        rows = [i for i, n in enumerate(lengths) if n == length]
        f = extractor(wavs[rows, :length])
        if out is None:
            out = f.new_zeros(wavs.shape[0], f.shape[1], max(conv_frames(extractor, torch.tensor(lengths)).tolist()))
        out[rows, :, : f.shape[-1]] = f
    return out


def _time(fn: Callable[[], torch.Tensor], repeats: int, backward: bool) -> float:
    times = []
    for _ in range(repeats + 1):  # the first is warm-up
        t0 = time.perf_counter()
        out = fn()
        if backward:
            out.pow(2).mean().backward()
        times.append(time.perf_counter() - t0)
    return statistics.median(times[1:])


def main(argv: Optional[List[str]] = None) -> int:
    """Time the three ways on one batch and print the table."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    extractor = MaskedConvFeatureExtractor(conv_layers(make_student_config()), mode="default").to(device)
    lengths = near_crop_lengths(args.batch_size, seed=0)
    wavs = torch.zeros(len(lengths), max(lengths), device=device)
    for i, n in enumerate(lengths):
        wavs[i, :n] = 0.1 * torch.randn(n, device=device)
    t_lengths = torch.tensor(lengths, device=device)
    ways = {
        "per-length": lambda: _per_length(extractor, wavs, lengths),
        "masked": lambda: extractor(wavs, t_lengths),
        "plain": lambda: extractor(wavs),
    }
    frames = conv_frames(extractor, torch.tensor(lengths)).tolist()
    with torch.no_grad():
        ref = ways["per-length"]()
        outs = {k: f() for k, f in ways.items()}
    diffs = {k: max(float((o[i, :, :n] - ref[i, :, :n]).abs().max()) for i, n in enumerate(frames)) for k, o in outs.items()}
    del outs
    print("| way | forward + backward s (student) | forward s, no_grad (teacher) | max abs diff from per-length |")
    print("|---|---|---|---|")
    for name, fn in ways.items():
        train = _time(fn, args.repeats, backward=True)
        with torch.no_grad():
            infer = _time(fn, args.repeats, backward=False)
        print(f"| {name} | {train:.2f} | {infer:.2f} | {diffs[name]:.1e} |")
    print(f"[conv-extractor bench] {len(lengths)} utterances of {', '.join(f'{n / SAMPLE_RATE:.2f}' for n in lengths)} s, "
          f"HuBERT Base conv stack, {device}, {torch.get_num_threads()} threads", file=sys.stderr)
    return 0
