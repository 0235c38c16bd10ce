"""Distorted student input: the student hears a distorted copy while the teachers hear clean audio.

As in robust distillation (the student learns to map distorted speech to the teachers' clean
representations): per utterance, reverberation with a synthetic room impulse response (with
probability ``reverberation.prob``), then at most one additive noise: Gaussian noise
(``gaussian_noise.prob``) or a random excerpt of a noise file from a folder such as MUSAN
(``noise_files.prob``), scaled to an SNR drawn uniformly from the given range in dB. Off by
default (``enabled: false``); every random draw comes from the caller's generator, so a step's
distortions are reproducible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import soundfile as sf
import torch

from s3prl_ekd.config.reader import from_mapping, setting, to_dict
from s3prl_ekd.config.values import ConfigValueError
from s3prl_ekd.io import SAMPLE_RATE


class DistortionConfigError(ConfigValueError):
    """A ``distortions`` setting that cannot be used."""


PROB = {"low": 0.0, "high": 1.0}


def _check_range(pair: Tuple[float, float], key: str) -> None:
    if pair[0] > pair[1]:
        raise DistortionConfigError(f"`{key}` must be [low, high] with low <= high, got {list(pair)!r}")


@dataclass(frozen=True)
class GaussianNoise:
    """Additive Gaussian noise at an SNR drawn from ``snr_db``."""

    prob: float = setting(0.0, **PROB)
    snr_db: Tuple[float, float] = (5.0, 20.0)

    def __post_init__(self):
        _check_range(self.snr_db, "distortions.gaussian_noise.snr_db")


@dataclass(frozen=True)
class NoiseFiles:
    """Additive noise: random excerpts of the files under ``folder`` (e.g. MUSAN's noise/)."""

    prob: float = setting(0.0, **PROB)
    folder: Optional[str] = None
    snr_db: Tuple[float, float] = (5.0, 20.0)
    extensions: Tuple[str, ...] = (".wav", ".flac")

    def __post_init__(self):
        _check_range(self.snr_db, "distortions.noise_files.snr_db")


@dataclass(frozen=True)
class Reverberation:
    """A synthetic room impulse response: ``rt60`` seconds of decay, ``drr_db`` direct-to-reverberant."""

    prob: float = setting(0.0, **PROB)
    rt60: Tuple[float, float] = setting((0.2, 0.8), low=0.0, low_open=True)
    drr_db: Tuple[float, float] = (0.0, 10.0)

    def __post_init__(self):
        _check_range(self.rt60, "distortions.reverberation.rt60")
        _check_range(self.drr_db, "distortions.reverberation.drr_db")


@dataclass(frozen=True)
class DistortionConfig:
    """The ``distortions:`` block."""

    enabled: bool = False  # off by default: the paper does not say EKD distorted the student's input
    gaussian_noise: GaussianNoise = field(default_factory=GaussianNoise)
    noise_files: NoiseFiles = field(default_factory=NoiseFiles)
    reverberation: Reverberation = field(default_factory=Reverberation)

    def __post_init__(self):
        additive = self.gaussian_noise.prob + self.noise_files.prob
        if additive > 1.0 + 1e-9:
            raise DistortionConfigError(
                f"distortions.gaussian_noise.prob + noise_files.prob = {additive} > 1: at most one additive noise is drawn"
            )
        if self.enabled and self.noise_files.prob > 0 and not self.noise_files.folder:
            raise DistortionConfigError(
                "distortions.noise_files.prob > 0 needs distortions.noise_files.folder (e.g. MUSAN's noise/)"
            )


def make_distortion_config(overrides: Optional[Mapping] = None) -> Dict[str, object]:
    """Defaults updated by ``overrides`` (section by section) as plain data; unknown keys and bad
    values are errors naming the key."""
    return to_dict(from_mapping(DistortionConfig, overrides or {}, "distortions", DistortionConfigError))


def add_noise_at_snr(wav: torch.Tensor, noise: torch.Tensor, snr_db: float) -> torch.Tensor:
    """``wav + g * noise`` with ``g`` making 10 log10(mean wav^2 / mean (g noise)^2) equal ``snr_db``."""
    p_signal = wav.pow(2).mean()
    p_noise = noise.pow(2).mean().clamp(min=1e-12)
    gain = torch.sqrt(p_signal / (p_noise * 10.0 ** (snr_db / 10.0)))
    return wav + gain * noise


def synthetic_rir(rt60: float, drr_db: float, generator: torch.Generator, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """A room impulse response: a unit direct path, then Gaussian noise decaying 60 dB over ``rt60`` s,
    its energy ``drr_db`` below the direct path's (direct-to-reverberant ratio)."""
    n = max(2, int(rt60 * sample_rate))
    t = torch.arange(n, dtype=torch.float32) / sample_rate
    tail = torch.randn(n, generator=generator) * torch.exp(-math.log(1000.0) * t / rt60)
    tail[0] = 0.0
    tail = tail * torch.sqrt(10.0 ** (-drr_db / 10.0) / tail.pow(2).sum().clamp(min=1e-12))
    tail[0] = 1.0
    return tail


def reverberate(wav: torch.Tensor, rir: torch.Tensor) -> torch.Tensor:
    """Convolve with ``rir`` (same length out), rescaled to the input's power."""
    n = wav.shape[-1] + rir.shape[-1] - 1
    size = 1 << (n - 1).bit_length()
    out = torch.fft.irfft(torch.fft.rfft(wav, size) * torch.fft.rfft(rir.to(wav), size), size)[: wav.shape[-1]]
    return out * torch.sqrt(wav.pow(2).mean() / out.pow(2).mean().clamp(min=1e-12))


class Distorter:
    """Applies the configured distortions to a list of waveforms; ``last_applied`` says what was drawn."""

    def __init__(self, config: Optional[Mapping] = None):
        self.config = make_distortion_config(config)
        self.enabled = bool(self.config["enabled"])
        self.noise_paths: List[Path] = []
        nf = self.config["noise_files"]
        if self.enabled and float(nf["prob"]) > 0:
            folder = Path(nf["folder"])
            if not folder.is_dir():
                raise DistortionConfigError(f"distortions.noise_files.folder {folder} is not a folder")
            exts = tuple(e.lower() for e in nf["extensions"])
            self.noise_paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in exts)
            if not self.noise_paths:
                raise DistortionConfigError(f"no noise files ({', '.join(exts)}) under {folder}")
        self.last_applied: List[List[Dict[str, object]]] = []

    def _uniform(self, low_high, g: torch.Generator) -> float:
        low, high = float(low_high[0]), float(low_high[1])
        return low + (high - low) * float(torch.rand((), generator=g))

    def noise_excerpt(self, length: int, g: torch.Generator) -> Tuple[torch.Tensor, str]:
        """A random excerpt of ``length`` samples of a random noise file (tiled if shorter)."""
        path = self.noise_paths[int(torch.randint(len(self.noise_paths), (), generator=g))]
        noise, sr = sf.read(str(path), dtype="float32", always_2d=True)
        if sr != SAMPLE_RATE:
            raise DistortionConfigError(f"noise file {path} is sampled at {sr} Hz; resample it to {SAMPLE_RATE} Hz")
        noise = torch.from_numpy(noise.mean(axis=1))
        if len(noise) < length:
            noise = noise.repeat(length // max(1, len(noise)) + 1)
        start = int(torch.randint(len(noise) - length + 1, (), generator=g))
        return noise[start : start + length], str(path)

    def distort(self, wav: torch.Tensor, g: torch.Generator) -> Tuple[torch.Tensor, List[Dict[str, object]]]:
        """One utterance: (distorted copy, list of what was applied with its drawn parameters)."""
        applied: List[Dict[str, object]] = []
        if not self.enabled:
            return wav, applied
        cfg = self.config
        out = wav.float()
        if float(torch.rand((), generator=g)) < float(cfg["reverberation"]["prob"]):
            rt60 = self._uniform(cfg["reverberation"]["rt60"], g)
            drr = self._uniform(cfg["reverberation"]["drr_db"], g)
            out = reverberate(out, synthetic_rir(rt60, drr, g))
            applied.append({"kind": "reverberation", "rt60": rt60, "drr_db": drr})
        u = float(torch.rand((), generator=g))
        p_gauss = float(cfg["gaussian_noise"]["prob"])
        p_files = float(cfg["noise_files"]["prob"])
        if u < p_gauss:
            snr = self._uniform(cfg["gaussian_noise"]["snr_db"], g)
            noise = torch.randn(out.shape, generator=g)
            out = add_noise_at_snr(out, noise.to(out), snr)
            applied.append({"kind": "gaussian_noise", "snr_db": snr})
        elif u < p_gauss + p_files:
            snr = self._uniform(cfg["noise_files"]["snr_db"], g)
            noise, path = self.noise_excerpt(out.shape[-1], g)
            out = add_noise_at_snr(out, noise.to(out), snr)
            applied.append({"kind": "noise_file", "snr_db": snr, "path": path})
        return out.to(wav.dtype), applied

    def __call__(self, wavs: Sequence[torch.Tensor], generator: torch.Generator) -> List[torch.Tensor]:
        """Distort each waveform (drawn on CPU from ``generator``); the clean list is left untouched."""
        if not self.enabled:
            self.last_applied = [[] for _ in wavs]
            return list(wavs)
        outs, self.last_applied = [], []
        for w in wavs:
            d, applied = self.distort(w.detach().cpu(), generator)
            outs.append(d.to(w.device))
            self.last_applied.append(applied)
        return outs
