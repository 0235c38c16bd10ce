"""Timing of training steps: median seconds of audio per second after warm-up, and peak memory."""

from __future__ import annotations

import os
import statistics
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterable, List, Sequence

import torch

SAMPLE_RATE = 16000


@dataclass
class PathResult:
    """What one benchmarked path measured."""

    name: str
    n_teachers: int
    step_seconds: List[float] = field(default_factory=list)  # timed steps only, after warm-up
    audio_seconds: List[float] = field(default_factory=list)  # unpadded audio per timed step
    padding_fraction: float = 0.0  # mean share of padding in the timed batches
    peak_memory_mb: float = 0.0
    memory_kind: str = ""  # cuda_max_allocated | cpu_rss_peak
    settings: dict = field(default_factory=dict)

    @property
    def audio_per_second(self) -> float:
        """Median over timed steps of (seconds of audio in the step) / (seconds the step took)."""
        return statistics.median(a / s for a, s in zip(self.audio_seconds, self.step_seconds))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["audio_seconds_per_second"] = self.audio_per_second
        d["median_step_seconds"] = statistics.median(self.step_seconds)
        return d


class _RssSampler:
    """Samples the process's resident memory in a thread (CPU has no allocator peak counter)."""

    def __init__(self, interval: float = 0.005):
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._page = os.sysconf("SC_PAGE_SIZE")

    def _rss(self) -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self._page

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            time.sleep(self.interval)

    def __enter__(self):
        self.peak = self._rss()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(
    name: str,
    n_teachers: int,
    step: Callable[[object], None],
    batches: Iterable,
    lengths: Sequence[Sequence[int]],
    warmup: int,
    device: torch.device,
) -> PathResult:
    """Run ``step`` on every batch; the first ``warmup`` are not timed. ``lengths[i]``: batch i's
    unpadded lengths in samples. ``batches`` may be an iterator (a DataLoader): fetching the next
    batch is part of the timed step, so a starved loader shows up in the numbers."""
    result = PathResult(name=name, n_teachers=n_teachers)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    pads = []
    it = iter(batches)
    with _RssSampler() as rss:
        for i, lens in enumerate(lengths):
            _sync(device)
            t0 = time.perf_counter()
            step(next(it))
            _sync(device)
            dt = time.perf_counter() - t0
            if i >= warmup:
                result.step_seconds.append(dt)
                result.audio_seconds.append(sum(lens) / SAMPLE_RATE)
                pads.append(1.0 - sum(lens) / (len(lens) * max(lens)))
    if not result.step_seconds:
        raise ValueError(f"path {name}: no timed steps (give more steps than warm-up steps)")
    result.padding_fraction = sum(pads) / len(pads)
    if device.type == "cuda":
        result.peak_memory_mb = torch.cuda.max_memory_allocated(device) / 2**20
        result.memory_kind = "cuda_max_allocated"
    else:
        result.peak_memory_mb = rss.peak / 2**20
        result.memory_kind = "cpu_rss_peak"
    return result
