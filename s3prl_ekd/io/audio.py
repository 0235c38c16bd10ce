"""Reading and checking audio: the one place that decides what a bad waveform becomes.

Two users, two policies (the README's "Bad input and faults" table lists them):

* **Pretraining datasets** read files with :func:`load_audio`. What users want is repaired
  (stereo is averaged to mono, other sample rates are resampled to 16 kHz, files longer than
  the configured maximum are cropped while reading, so a two-hour file never sits in memory);
  what cannot be repaired (unreadable, empty, shorter than one frame, a sample rate outside
  1 kHz..768 kHz, NaN/inf samples, also after downmixing or resampling, missing) raises
  :class:`AudioError`, which the dataset turns into a skip through :class:`AudioStats`:
  a warning naming the file and a running count.
* **The upstream's forward** (downstream use) checks a batch of tensors with
  :func:`check_waveforms`: a waveform shorter than one frame is zero-padded to one frame with a
  warning; NaN/inf samples, a waveform that is not 1-D, or features that come out NaN/inf (huge
  amplitudes) are a ``ValueError`` naming its batch index.
"""

from __future__ import annotations

import logging
import math
import os
import random
from collections import Counter
from dataclasses import dataclass
from typing import Dict, List, NamedTuple, Optional, Sequence

import numpy as np
import soundfile as sf
import torch
import torchaudio

from s3prl_ekd.io import SAMPLE_RATE

logger = logging.getLogger(__name__)

MIN_SAMPLES = 400  # HuBERT's / DistilHuBERT's conv receptive field: one 20 ms frame (25 ms window)
MIN_RATE, MAX_RATE = 1000, 768000  # sample rates a file may claim (768 kHz: the highest in use)
MAX_CHANNELS = 64
MAX_POLYPHASE_TAPS = 1 << 20  # above this, torchaudio's filter bank is replaced by libsoxr (see resample)


class AudioError(ValueError):
    """A file that cannot become a training waveform; ``reason`` is a short counter key."""

    def __init__(self, path: os.PathLike | str, reason: str, message: str):
        super().__init__(f"{path}: {message}")
        self.path = str(path)
        self.reason = reason


@dataclass(frozen=True)
class AudioSpec:
    """What a training waveform must be, and the limits of what is repaired."""

    sample_rate: int = SAMPLE_RATE
    min_samples: int = MIN_SAMPLES
    # Longest waveform kept, in samples at ``sample_rate``; longer files are cropped while read.
    # None keeps everything. DistilHuBERT crops at 250 000 samples (15.6 s): the pretraining
    # config passes that value.
    max_samples: Optional[int] = None

    def __post_init__(self):
        if self.sample_rate <= 0 or self.min_samples < 1:
            raise ValueError(f"sample_rate and min_samples must be positive, got {self}")
        if self.max_samples is not None and self.max_samples < self.min_samples:
            raise ValueError(
                f"max_samples ({self.max_samples}) is below min_samples ({self.min_samples}): "
                "no waveform could be kept; raise max_samples (e.g. 250000, DistilHuBERT's crop)"
            )


class LoadedAudio(NamedTuple):
    """A waveform and where it came from: what identifies it (e.g. for the teacher-target cache)."""

    wav: torch.Tensor  # mono float32 at the spec's sample rate
    start: int  # first frame read, in the file's own sample rate (0 unless cropped)
    cropped: bool  # True when a window of a longer file was read
    file_bytes: int  # the file's size


def load_audio(
    path: os.PathLike | str,
    spec: AudioSpec = AudioSpec(),
    rng: Optional[random.Random] = None,
    stats: Optional["AudioStats"] = None,
) -> torch.Tensor:
    """A mono float32 waveform at ``spec.sample_rate`` from ``path``, or :class:`AudioError`.

    Files longer than ``spec.max_samples`` are cropped to it while reading (a random window
    drawn from ``rng``; the start of the file without one). ``stats`` counts the repairs.
    """
    return load_audio_window(path, spec, rng, stats).wav


def load_audio_window(
    path: os.PathLike | str,
    spec: AudioSpec = AudioSpec(),
    rng: Optional[random.Random] = None,
    stats: Optional["AudioStats"] = None,
) -> LoadedAudio:
    """:func:`load_audio`, also saying which window of the file was read (same draws from ``rng``)."""
    path = str(path)
    if not os.path.exists(path):
        raise AudioError(path, "missing", "file does not exist (moved or deleted since the length table was written?)")
    file_bytes = os.path.getsize(path)
    if file_bytes == 0:
        raise AudioError(path, "empty", "file is empty (0 bytes)")
    try:
        info = sf.info(path)
    except Exception as e:  # libsndfile raises RuntimeError subclasses; anything else is as bad
        raise AudioError(path, "unreadable", f"cannot be read as audio ({_first_line(e)})") from None
    sr, frames, channels = int(info.samplerate), int(info.frames), int(info.channels)
    if frames <= 0:
        raise AudioError(path, "empty", "holds no audio samples (0 frames)")
    if not MIN_RATE <= sr <= MAX_RATE:  # a damaged or hostile header: nothing sensible to resample
        raise AudioError(path, "bad_rate", f"claims a sample rate of {sr} Hz, outside {MIN_RATE}..{MAX_RATE} Hz")
    if not 1 <= channels <= MAX_CHANNELS:
        raise AudioError(path, "bad_channels", f"claims {channels} channels, outside 1..{MAX_CHANNELS}")

    start, stop = 0, frames
    if spec.max_samples is not None:
        # read only the window that survives the crop; a little margin for the resampler
        want = math.ceil(spec.max_samples * sr / spec.sample_rate)
        if frames > want:
            start = rng.randint(0, frames - want) if rng is not None else 0
            stop = start + want
            if stats is not None:
                stats.note("cropped", path)
    try:
        data, _ = sf.read(path, start=start, stop=stop, dtype="float32", always_2d=True)
    except Exception as e:
        raise AudioError(path, "unreadable", f"is damaged or truncated ({_first_line(e)})") from None
    if data.shape[0] == 0:
        raise AudioError(path, "empty", "holds no audio samples (0 frames)")
    wav = _finite(torch.from_numpy(data), path, "")

    if channels > 1:
        wav = _finite(wav.mean(dim=1), path, " after averaging its channels")  # huge samples may overflow
        if stats is not None:
            stats.note("downmixed", path, f"{channels} channels averaged to mono")
    else:
        wav = wav[:, 0]
    if sr != spec.sample_rate:
        wav = _finite(resample(wav, sr, spec.sample_rate), path, f" after resampling from {sr} Hz")
        if stats is not None:
            stats.note("resampled", path, f"resampled from {sr} Hz to {spec.sample_rate} Hz")
    if spec.max_samples is not None and wav.numel() > spec.max_samples:
        wav = wav[: spec.max_samples]
    if wav.numel() < spec.min_samples:
        raise AudioError(
            path,
            "too_short",
            f"has {wav.numel()} samples at {spec.sample_rate} Hz, fewer than one frame ({spec.min_samples})",
        )
    return LoadedAudio(wav.contiguous(), start, (start, stop) != (0, frames), file_bytes)


def _finite(wav: torch.Tensor, path: str, when: str) -> torch.Tensor:
    """``wav``, or :class:`AudioError` (``non_finite``) when a sample is NaN/inf (checked after every transform)."""
    if not torch.isfinite(wav).all():
        bad = int((~torch.isfinite(wav)).sum())
        raise AudioError(path, "non_finite", f"holds {bad} NaN/inf samples{when}: repair or remove the file")
    return wav


def resample(wav: torch.Tensor, orig: int, new: int) -> torch.Tensor:
    """``wav`` (1-D float32) from ``orig`` Hz to ``new`` Hz with memory bounded for any pair of rates.

    torchaudio's polyphase resampler builds a filter bank of about ``new/g x orig/g`` taps
    (``g`` = gcd of the rates): small for the usual rates (44.1 kHz -> 16 kHz: 160 x 441), but
    gigabytes for a rate just off a common one (16001 Hz: 16000 x 16001). Those go through
    libsoxr, which streams with a fixed-size filter.
    """
    g = math.gcd(orig, new)
    if (new // g) * (orig // g) <= MAX_POLYPHASE_TAPS:
        return torchaudio.functional.resample(wav, orig, new)
    import soxr

    out = soxr.resample(wav.numpy().astype(np.float32, copy=False), orig, new, quality="HQ")
    return torch.from_numpy(np.ascontiguousarray(out, dtype=np.float32))


class AudioStats:
    """Counts skipped and repaired files; logs each skip (naming the file) and each first repair.

    Skips are warnings with a running count, so a log always tells how many files were lost;
    repairs (resample, downmix, crop) are routine for some corpora: the first of each kind is
    logged, the rest only counted. After ``max_logged`` skip lines of one reason, the rest are counted.
    """

    REPAIRS = ("cropped", "downmixed", "resampled")

    def __init__(self, max_logged: int = 50):
        self.counts: Counter = Counter()
        self.max_logged = max_logged

    def note(self, kind: str, path: str, detail: str = "") -> None:
        """Count a repair; log it the first time it happens."""
        self.counts[kind] += 1
        if self.counts[kind] == 1:
            logger.warning(f"[audio] {path}: {detail or kind} (further '{kind}' files are counted, not logged)")

    def skip(self, error: AudioError) -> None:
        """Count a skipped file and log a warning naming it."""
        self.counts["skipped"] += 1
        self.counts[f"skipped/{error.reason}"] += 1
        n = self.counts[f"skipped/{error.reason}"]
        if n <= self.max_logged:
            logger.warning(f"[audio] skipping {error} ({self.counts['skipped']} file(s) skipped so far)")
        elif n == self.max_logged + 1:
            logger.warning(f"[audio] more '{error.reason}' files are being skipped: counted, no longer logged")

    @property
    def skipped(self) -> int:
        """Files skipped so far."""
        return self.counts["skipped"]

    def scalars(self, prefix: str = "audio/") -> Dict[str, int]:
        """The counts as TensorBoard scalars (``audio/skipped``, ``audio/skipped/missing``, ...)."""
        return {prefix + k: v for k, v in sorted(self.counts.items())}

    def summary(self) -> str:
        """One log line of every count."""
        return "[audio] " + (", ".join(f"{k}: {v}" for k, v in sorted(self.counts.items())) or "no file skipped or repaired")


def missing_files(paths: Sequence[str], root: Optional[str] = None) -> List[str]:
    """The entries of a length table whose file does not exist (checked before training starts)."""
    return [p for p in paths if not os.path.isfile(os.path.join(root, p) if root else p)]


def check_waveforms(wavs: Sequence[torch.Tensor], min_samples: int = MIN_SAMPLES) -> List[torch.Tensor]:
    """The upstream-forward policy: pad sub-frame waveforms to one frame, refuse NaN/inf and non-1-D.

    Raises ``ValueError`` naming the batch index; returns the (possibly padded) list.
    """
    if len(wavs) == 0:
        raise ValueError("the upstream was given an empty batch: pass a list of 1-D waveforms")
    out = []
    padded = []
    for i, wav in enumerate(wavs):
        if not isinstance(wav, torch.Tensor):
            raise ValueError(f"waveform {i} of the batch is a {type(wav).__name__}: pass 1-D torch tensors")
        if wav.dim() != 1:
            raise ValueError(
                f"waveform {i} of the batch has shape {tuple(wav.shape)}: pass mono 1-D waveforms at "
                f"{SAMPLE_RATE} Hz (average stereo channels first, e.g. wav.mean(0))"
            )
        if not torch.isfinite(wav).all():
            bad = int((~torch.isfinite(wav)).sum())
            raise ValueError(
                f"waveform {i} of the batch holds {bad} NaN/inf sample(s) out of {wav.numel()}: "
                "clean the input audio (the student would turn it into NaN features)"
            )
        if wav.numel() < min_samples:
            padded.append((i, wav.numel()))
            wav = torch.nn.functional.pad(wav, (0, min_samples - wav.numel()))
        out.append(wav)
    if padded:
        logger.warning(
            f"[audio] waveform(s) {', '.join(f'{i} ({n} samples)' for i, n in padded)} shorter than one "
            f"frame ({min_samples} samples): zero-padded to one frame"
        )
    return out


def check_features_finite(wavs: Sequence[torch.Tensor], hidden: Sequence[torch.Tensor], frames: torch.Tensor) -> None:
    """``ValueError`` naming the batch index of a waveform whose features (B x T x D hidden states,
    ``frames`` valid per row) hold NaN/inf: finite but huge samples overflow inside the model."""
    for i, n in enumerate(frames.tolist()):
        if not all(torch.isfinite(h[i, :n]).all() for h in hidden):
            peak = float(wavs[i].abs().max())
            raise ValueError(
                f"waveform {i} of the batch gave NaN/inf features (its peak amplitude is {peak:.3g}; "
                "audio is expected in [-1, 1]): scale the input audio (e.g. divide int16 samples by 32768)"
            )


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0]}" if text else type(e).__name__
