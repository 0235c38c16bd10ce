"""Batches of LibriSpeech-like utterance lengths, with or without length bucketing."""

from __future__ import annotations

import random
from typing import List, Sequence

import torch

SAMPLE_RATE = 16000
# LibriSpeech 960 h: 281,241 utterances, 960.9 h -> 12.3 s on average; most lie between 10 and
# 17 s, the shortest about 1.3 s, the longest 24.5 s in train-clean-100 (~35 s overall).
LIBRISPEECH_MEAN_S = 12.3
LIBRISPEECH_STD_S = 3.5
LIBRISPEECH_MIN_S = 1.3
LIBRISPEECH_MAX_S = 24.5
CROP_SAMPLES = 250_000  # DistilHuBERT's `sequence_length` crop (15.6 s), s3prl config_model.yaml


def librispeech_lengths(n: int, seed: int = 0, scale: float = 1.0) -> List[int]:
    """``n`` utterance lengths in samples, LibriSpeech-like (clipped normal), times ``scale``."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        s = min(max(rng.gauss(LIBRISPEECH_MEAN_S, LIBRISPEECH_STD_S), LIBRISPEECH_MIN_S), LIBRISPEECH_MAX_S)
        out.append(int(s * scale * SAMPLE_RATE))
    return out


def crop(lengths: Sequence[int], max_samples: int) -> List[int]:
    """Lengths after a random crop to at most ``max_samples`` (s3prl's `sequence_length`)."""
    return [min(int(l), int(max_samples)) for l in lengths]


def make_batches(lengths: Sequence[int], batch_size: int, bucketing: bool, seed: int = 0) -> List[List[int]]:
    """Group utterance lengths into batches.

    ``bucketing``: sort by length and cut consecutive runs, as s3prl's bucket dataset does, so a
    batch holds similar lengths and padding is small; otherwise batches are random draws.
    Batch order is shuffled either way; a short last batch is dropped.
    """
    rng = random.Random(seed)
    order = list(lengths)
    if bucketing:
        order.sort(reverse=True)
    else:
        rng.shuffle(order)
    batches = [order[i : i + batch_size] for i in range(0, len(order) - batch_size + 1, batch_size)]
    rng.shuffle(batches)
    return batches


def padding_fraction(batch: Sequence[int]) -> float:
    """Share of a padded B x max(L) batch that is padding."""
    return 1.0 - sum(batch) / (len(batch) * max(batch))


def synth_waves(batch: Sequence[int], seed: int) -> List[torch.Tensor]:
    """Random waveforms of the given lengths (compute, not content, matters for throughput)."""
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(int(n), generator=g) * 0.1 for n in batch]
