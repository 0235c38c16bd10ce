"""Timing of training steps: median seconds of audio per second after warm-up, and peak memory."""

from __future__ import annotations

import contextlib
import os
import statistics
import threading
import time
import warnings
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterable, Iterator, List, Optional

import torch

from s3prl_ekd.io import SAMPLE_RATE


@dataclass
class PathResult:
    """What one benchmarked path measured."""

    name: str
    n_teachers: int
    step_seconds: List[float] = field(default_factory=list)  # timed steps only, after warm-up
    cpu_seconds: List[float] = field(default_factory=list)  # this process's CPU time per timed step
    audio_seconds: List[float] = field(default_factory=list)  # unpadded audio per timed step
    padding_fraction: float = 0.0  # mean share of padding in the timed batches
    peak_memory_mb: float = 0.0
    memory_kind: str = ""  # cuda_max_allocated | cpu_rss_peak
    settings: dict = field(default_factory=dict)

    @property
    def audio_per_second(self) -> float:
        """Median over timed steps of (seconds of audio in the step) / (seconds the step took)."""
        return statistics.median(a / s for a, s in zip(self.audio_seconds, self.step_seconds))

    @property
    def audio_per_cpu_second(self) -> float:
        """The same per CPU-second of this process: steadier than wall time on a shared machine,
        blind to work done in loader worker processes or on a GPU."""
        return statistics.median(a / max(c, 1e-9) for a, c in zip(self.audio_seconds, self.cpu_seconds))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["audio_seconds_per_second"] = self.audio_per_second
        d["audio_seconds_per_cpu_second"] = self.audio_per_cpu_second
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


@contextlib.contextmanager
def count_host_syncs(device: torch.device, enabled: bool) -> Iterator[Optional[list]]:
    """On CUDA with ``enabled``: the warnings torch gives for each device-to-host sync inside
    (``torch.cuda.set_sync_debug_mode('warn')``); None elsewhere."""
    if not enabled or device.type != "cuda":
        yield None
        return
    previous = torch.cuda.get_sync_debug_mode()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            yield caught
        finally:
            torch.cuda.set_sync_debug_mode(previous)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":  # the timer's own wait, not counted by count_host_syncs
        mode = torch.cuda.get_sync_debug_mode()
        torch.cuda.set_sync_debug_mode(0)
        torch.cuda.synchronize(device)
        torch.cuda.set_sync_debug_mode(mode)


def time_steps(
    name: str,
    n_teachers: int,
    step: Callable[[object], None],
    batches: Iterable,
    n_steps: int,
    warmup: int,
    device: torch.device,
) -> PathResult:
    """Run ``step`` on ``warmup + n_steps`` batches (objects with ``lengths``, as the pretraining
    loader yields); the first ``warmup`` are not timed. Fetching the next batch is part of the
    timed step, so a loader that cannot keep up shows in the numbers."""
    result = PathResult(name=name, n_teachers=n_teachers)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    pads = []
    it = iter(batches)
    with _RssSampler() as rss:
        for i in range(warmup + n_steps):
            _sync(device)
            t0, c0 = time.perf_counter(), time.process_time()
            batch = next(it)
            step(batch)
            _sync(device)
            dt, dc = time.perf_counter() - t0, time.process_time() - c0
            if i >= warmup:
                lens = [int(n) for n in batch.lengths]
                result.step_seconds.append(dt)
                result.cpu_seconds.append(dc)
                result.audio_seconds.append(sum(lens) / SAMPLE_RATE)
                pads.append(1.0 - sum(lens) / (len(lens) * max(lens)))
    if not result.step_seconds:
        raise ValueError(f"path {name}: no timed steps (give --steps >= 1)")
    result.padding_fraction = sum(pads) / len(pads)
    if device.type == "cuda":
        result.peak_memory_mb = torch.cuda.max_memory_allocated(device) / 2**20
        result.memory_kind = "cuda_max_allocated"
    else:
        result.peak_memory_mb = rss.peak / 2**20
        result.memory_kind = "cpu_rss_peak"
    return result
