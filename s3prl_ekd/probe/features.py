"""Frozen features of one upstream for every item of a :class:`ProbeCorpus`, extracted once and cached.

Each file is run through the upstream alone, or, for upstreams that compute a padded batch
exactly (our student), in length-sorted batches with each item's padded frames dropped. The
chosen hidden states are concatenated along the feature axis, and kept twice: mean-pooled over the utterance (SID, ER),
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
import soundfile as sf
import torch
from tqdm import tqdm

from s3prl_ekd.demo.settings import fingerprint
from s3prl_ekd.io import SAMPLE_RATE
from s3prl_ekd.io.atomic import atomic_write
from s3prl_ekd.io.audio import load_audio
from s3prl_ekd.probe.data import ProbeCorpus, UpstreamSpec

FEATURE_VERSION = 2  # bump when what is extracted changes for the same inputs (2: padded batches)
# Padded audio a call for upstreams that batch exactly. Measured on a default-demo student (AMD EPYC,
# 1 thread): 60 s took 7.4 s CPU for the demo corpus' 1,536 files, one file a call 18 to 23 s;
# 10 s batches 12 s, 120 s and more 12 to 14 s (the activations fall out of the cache).
BATCH_SECONDS = 60.0


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


def pads_exactly(expert: torch.nn.Module) -> bool:
    """Whether one call of ``expert`` on a padded batch gives every item its features alone (up to
    float noise): our student with ``exact_padding`` (group norms over each item's own frames,
    padded frames masked in the encoder). Other upstreams run one file a call: s3prl's HuBERT-like
    experts let the padding join their group norm's statistics."""
    from s3prl_ekd.upstream.ekd_student.expert import UpstreamExpert

    return isinstance(expert, UpstreamExpert) and bool(expert.student.config.get("exact_padding"))


def length_batches(lengths: Sequence[int], max_samples: int) -> List[List[int]]:
    """Indices of ``lengths`` sorted by length (stable), cut into batches whose padded size
    (items x longest) stays within ``max_samples``; a longer item goes alone."""
    batches: List[List[int]] = []
    for i in np.argsort(np.asarray(lengths), kind="stable").tolist():
        if batches and (len(batches[-1]) + 1) * lengths[i] <= max_samples:
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


def _samples(path: str) -> int:
    """Samples at 16 kHz the file's header promises (0 if unreadable: loading it names the problem)."""
    try:
        info = sf.info(path)
        return int(info.frames) * SAMPLE_RATE // max(int(info.samplerate), 1)
    except Exception:  # libsndfile's errors vary; load_audio raises the clear one
        return 0


def _valid_frames(expert: torch.nn.Module, wavs: Sequence[torch.Tensor], total: int) -> List[int]:
    """Frames of each item of a batch the expert gave ``total`` frames for (one item: all of them)."""
    if len(wavs) == 1:
        return [total]
    student = expert.student  # only batched when pads_exactly: the student's own frame rule
    lengths = torch.tensor([max(len(w), student.receptive_field) for w in wavs])  # sub-frame files are padded
    return student.frame_lengths(lengths).clamp(max=total).tolist()


def extract_features(expert: torch.nn.Module, corpus: ProbeCorpus, layers: Optional[Sequence[int]] = None,
                     desc: str = "features", batch_seconds: float = BATCH_SECONDS) -> Features:
    """Run ``expert`` on every file of ``corpus``; hidden states ``layers`` (default all) concatenated.
    Upstreams that :func:`pads_exactly` get length-sorted batches of up to ``batch_seconds`` of padded
    audio a call; each item's frames past its own length are dropped."""
    rate = int(expert.get_downsample_rates("hidden_states"))
    wanted = {split: [] for split in corpus.frames}
    for split, fs in corpus.frames.items():
        order = np.argsort(fs.file, kind="stable")
        wanted[split] = (order, np.searchsorted(fs.file[order], np.arange(len(corpus.files) + 1)))
    paths = [os.path.join(corpus.root, rel) for rel in corpus.files]
    if pads_exactly(expert) and batch_seconds > 0:
        # the header's frame count (at the file's rate) orders the files; only the grouping depends on it
        sizes = [_samples(p) for p in paths]
        batches = length_batches(sizes, int(batch_seconds * SAMPLE_RATE))
    else:
        batches = [[i] for i in range(len(paths))]
    pooled: List[Optional[np.ndarray]] = [None] * len(paths)
    frames = {split: None for split in corpus.frames}
    bar = tqdm(total=len(paths), desc=desc, dynamic_ncols=True, leave=False, disable=None)
    with torch.no_grad():
        for batch in batches:
            wavs = [load_audio(paths[i]) for i in batch]
            states = expert(wavs)["hidden_states"]
            chosen = states if layers is None else [states[k] for k in _check_layers(layers, len(states))]
            hs = torch.cat(chosen, dim=-1).float()  # B x T x D
            for b, (i, n) in enumerate(zip(batch, _valid_frames(expert, wavs, hs.shape[1]))):
                h = hs[b, :n]
                pooled[i] = h.mean(0).numpy()
                for split, (order, bounds) in wanted.items():
                    rows = order[bounds[i]:bounds[i + 1]]
                    if len(rows) == 0:
                        continue
                    if frames[split] is None:
                        frames[split] = np.zeros((len(corpus.frames[split].file), h.shape[1]), dtype=np.float32)
                    t = np.minimum(corpus.frames[split].sample[rows] // rate, h.shape[0] - 1)
                    frames[split][rows] = h[torch.from_numpy(t)].numpy()
            bar.update(len(batch))
    bar.close()
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
