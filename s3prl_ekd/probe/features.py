"""Frozen features of one upstream for every item of a :class:`ProbeCorpus`, extracted once and cached.

Each file is run through the upstream alone (no padding), the chosen hidden states are
concatenated along the feature axis, and kept twice: mean-pooled over the utterance (SID, ER),
and at the PR positions of LibriSpeech files (the upstream's frame holding each position's
centre sample). The cache is one ``.npz`` per upstream (read back without pickle), named by a
hash of what it depends on: the upstream and its checkpoint file (path, size, modification
time), the corpus and the drawn positions, the layers.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from tqdm import tqdm

from s3prl_ekd.io.audio import load_audio
from s3prl_ekd.demo.settings import fingerprint
from s3prl_ekd.io.atomic import atomic_write
from s3prl_ekd.probe.data import ProbeCorpus, UpstreamSpec

FEATURE_VERSION = 1  # bump when what is extracted changes for the same inputs


@dataclass(frozen=True)
class Features:
    """One upstream's features: pooled per file, and at each PR split's positions."""

    pooled: np.ndarray  # files x D
    frames: Dict[str, np.ndarray]  # split -> positions x D


def _ckpt_stamp(ckpt: Optional[str]) -> Optional[List]:
    if not ckpt or not os.path.isfile(ckpt):
        return None
    st = os.stat(ckpt)
    return [os.path.abspath(ckpt), st.st_size, st.st_mtime]


def cache_key(spec: UpstreamSpec, corpus: ProbeCorpus, layers: Optional[Sequence[int]]) -> str:
    """The hash naming ``spec``'s cached features of ``corpus``."""
    return fingerprint(FEATURE_VERSION, spec.upstream, _ckpt_stamp(spec.ckpt) or spec.ckpt, corpus.key(),
                       list(layers) if layers is not None else None)


def load_expert(spec: UpstreamSpec) -> torch.nn.Module:
    """The upstream expert of ``spec`` (our hub entries registered), in eval mode."""
    from s3prl_ekd import register
    from s3prl_ekd.teachers.loading import load_upstream

    register()
    upstream = spec.upstream
    if upstream == "ekd_student" and spec.ckpt and os.path.isfile(spec.ckpt):
        upstream = "ekd_student_local"  # load_upstream wants a *_local name for a file
    return load_upstream(upstream, spec.ckpt, label=f"probe upstream {spec.name}").eval()


def extract_features(expert: torch.nn.Module, corpus: ProbeCorpus, layers: Optional[Sequence[int]] = None,
                     desc: str = "features") -> Features:
    """Run ``expert`` on every file of ``corpus``; hidden states ``layers`` (default all) concatenated."""
    rate = int(expert.get_downsample_rates("hidden_states"))
    wanted = {split: [] for split in corpus.frames}
    for split, fs in corpus.frames.items():
        order = np.argsort(fs.file, kind="stable")
        wanted[split] = (order, np.searchsorted(fs.file[order], np.arange(len(corpus.files) + 1)))
    pooled: List[np.ndarray] = []
    frames = {split: None for split in corpus.frames}
    with torch.no_grad():
        for i, rel in enumerate(tqdm(corpus.files, desc=desc, dynamic_ncols=True, leave=False, disable=None)):
            wav = load_audio(os.path.join(corpus.root, rel))
            states = expert([wav])["hidden_states"]
            chosen = states if layers is None else [states[k] for k in _check_layers(layers, len(states))]
            h = torch.cat([s[0] for s in chosen], dim=-1).float()  # T x D
            pooled.append(h.mean(0).numpy())
            for split, (order, bounds) in wanted.items():
                rows = order[bounds[i]:bounds[i + 1]]
                if len(rows) == 0:
                    continue
                if frames[split] is None:
                    frames[split] = np.zeros((len(corpus.frames[split].file), h.shape[1]), dtype=np.float32)
                t = np.minimum(corpus.frames[split].sample[rows] // rate, h.shape[0] - 1)
                frames[split][rows] = h[torch.from_numpy(t)].numpy()
    return Features(np.stack(pooled).astype(np.float32), frames)


def _check_layers(layers: Sequence[int], n: int) -> List[int]:
    bad = [k for k in layers if not -n <= int(k) < n]
    if bad:
        raise ValueError(f"hidden state(s) {bad} requested (--layers) but the upstream gives {n} (0..{n - 1})")
    return [int(k) for k in layers]


def save_features(features: Features, path: Path) -> Path:
    """Write ``features`` as an ``.npz`` atomically (temp file in the same folder, then rename)."""
    frames = {f"frames_{k}": v for k, v in features.frames.items()}
    path = atomic_write(path, lambda f: np.savez(f, pooled=features.pooled, **frames))
    return path


def load_features(path: Path) -> Features:
    """Read features written by :func:`save_features` (no pickle)."""
    with np.load(path) as data:  # numpy never unpickles by default: arrays only
        frames = {k[len("frames_"):]: data[k] for k in data.files if k.startswith("frames_")}
        return Features(data["pooled"], frames)


def cache_path(spec: UpstreamSpec, corpus: ProbeCorpus, cache_dir: os.PathLike,
               layers: Optional[Sequence[int]] = None) -> Path:
    """Where ``spec``'s features of ``corpus`` are cached under ``cache_dir``."""
    return Path(cache_dir) / f"{spec.name}-{cache_key(spec, corpus, layers)}.npz"


def cached_features(spec: UpstreamSpec, corpus: ProbeCorpus, cache_dir: Optional[os.PathLike],
                    layers: Optional[Sequence[int]] = None) -> Features:
    """``spec``'s features of ``corpus``: read from ``cache_dir`` when there, else extracted and saved."""
    path = cache_path(spec, corpus, cache_dir, layers) if cache_dir else None
    if path is not None and path.is_file():
        try:
            return load_features(path)
        except (OSError, ValueError, KeyError):
            path.unlink()  # a damaged cache entry is remade, never trusted
    features = extract_features(load_expert(spec), corpus, layers, desc=f"features {spec.name}")
    if path is not None:
        save_features(features, path)
    return features


def _extract_into_cache(spec: UpstreamSpec, corpus: ProbeCorpus, cache_dir: str,
                        layers: Optional[Sequence[int]], threads: int) -> str:
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(threads)
    with threadpool_limits(threads):
        cached_features(spec, corpus, cache_dir, layers)
    return spec.name


def fill_cache(specs: Sequence[UpstreamSpec], corpus: ProbeCorpus, cache_dir: os.PathLike,
               layers: Optional[Sequence[int]] = None, workers: int = 2, threads: int = 1) -> List[str]:
    """Extract the features of every spec not yet in ``cache_dir``, ``workers`` processes at once
    (each with ``threads`` threads): one upstream a process, so two cores extract two at a time."""
    missing = [s for s in specs if not cache_path(s, corpus, cache_dir, layers).is_file()]
    if len(missing) < 2 or workers < 2:
        return []
    import multiprocessing
    import warnings
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    # spawn: a fresh interpreter per worker (forking a process that holds torch's threads is unsafe)
    try:
        with ProcessPoolExecutor(min(workers, len(missing)), mp_context=multiprocessing.get_context("spawn")) as pool:
            jobs = [pool.submit(_extract_into_cache, s, corpus, str(cache_dir), layers, threads) for s in missing]
            return [job.result() for job in jobs]
    except (BrokenProcessPool, RuntimeError) as e:
        # e.g. a script without `if __name__ == "__main__":` cannot spawn: extract in this process
        warnings.warn(f"feature extraction in {workers} processes failed ({type(e).__name__}); "
                      "extracting in this process instead")
        return []
