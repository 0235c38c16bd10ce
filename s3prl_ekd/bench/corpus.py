"""A throw-away corpus of noise utterances with LibriSpeech-like lengths, in the layout the
pretraining dataset reads (LibriSpeech-style folder + s3prl length table), so the benchmark's
``ours`` path loads its batches through the real data pipeline."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Sequence

import numpy as np
import soundfile as sf

from s3prl_ekd.io import SAMPLE_RATE

SUBSET = "train-clean-100"


def write_noise_corpus(root: Path, lengths: Sequence[int], seed: int = 0) -> Dict[str, object]:
    """Write one 16-bit WAV per length under ``root`` and its length table; returns the
    ``datarc`` keys (``libri_root``, ``file_path``, ``sets``) that point the dataset at it."""
    from s3prl_ekd.pretrain.ekd.dataset import write_length_table

    root = Path(root)
    audio = root / "audio" / SUBSET / "0" / "0"
    audio.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    for i, n in enumerate(lengths):
        rel = f"{SUBSET}/0/0/0-0-{i:05d}.wav"
        wav = (rng.standard_normal(int(n)) * 0.1).clip(-1, 1).astype(np.float32)
        sf.write(str(root / "audio" / rel), wav, SAMPLE_RATE, subtype="PCM_16")
        rows.append((rel, int(n)))
    write_length_table(rows, root / "lengths" / f"{SUBSET}.csv")
    return {"libri_root": str(root / "audio"), "file_path": str(root / "lengths"), "sets": [SUBSET]}
