"""LibriSpeech-like utterance lengths for the benchmark's corpus."""

from __future__ import annotations

import random
from typing import List

from s3prl_ekd.io import SAMPLE_RATE

# LibriSpeech 960 h: 281,241 utterances in 960.9 h, 12.3 s on average, most of them 10 to 17 s
# long and few under 2 s. A normal distribution clipped to [1.3 s, 24.5 s] imitates that shape;
# it is an approximation, not the corpus's histogram.
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


def near_crop_lengths(n: int, seed: int = 0, scale: float = 1.0, spread_s: float = 1.0) -> List[int]:
    """``n`` distinct lengths within ``spread_s`` below the 15.6 s crop (times ``scale``): every
    batch is as long as training batches get, and no two utterances share a length."""
    rng = random.Random(seed)
    top = int(CROP_SAMPLES * scale)
    spread = int(spread_s * scale * SAMPLE_RATE)
    return rng.sample(range(top - spread, top + 1), n)
