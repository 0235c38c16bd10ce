"""Synthesise the plan in fixed shards, each in a fresh process: byte-identical for a seed.

eSpeak NG's output depends on its random state *and* on what it spoke before, so every shard
starts a new library state (``maxtasksperchild=1``) seeded from (seed, shard index): the files
do not depend on the number of workers.
"""

from __future__ import annotations

import errno
import multiprocessing as mp
import os
import shutil
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from s3prl_ekd.corpus.alignment import phone_segments
from s3prl_ekd.io import SAMPLE_RATE
from s3prl_ekd.io.atomic import atomic_write

SHARD_SIZE = 64  # utterances a shard; fixed, never derived from the worker count


def to_16k(wav: np.ndarray, rate: int) -> np.ndarray:
    """int16 at ``rate`` -> int16 at 16 kHz (libsoxr, deterministic; imports in 0.1 s)."""
    import soxr

    y = soxr.resample(wav.astype(np.float32), rate, SAMPLE_RATE, quality="HQ")
    return np.clip(np.round(y), -32768, 32767).astype(np.int16)


def _write_audio(path: str, wav: np.ndarray) -> None:
    import soundfile as sf

    fmt = "FLAC" if path.endswith(".flac") else "WAV"
    try:
        atomic_write(path, lambda f: sf.write(f, wav, SAMPLE_RATE, subtype="PCM_16", format=fmt))
    except (sf.LibsndfileError, OSError) as e:  # libsndfile says only "System error." on a full disk
        folder = os.path.dirname(path)
        free = shutil.disk_usage(folder).free
        if getattr(e, "errno", None) == errno.ENOSPC or free < 2 * wav.nbytes + (1 << 16):
            raise CorpusWriteError(
                f"the disk holding {folder} is full ({free:,} bytes free) while writing {path}: "
                "free some space or give make-corpus a folder on another disk"
            ) from None
        raise CorpusWriteError(f"cannot write {path}: {type(e).__name__}: {e}") from None


class CorpusWriteError(RuntimeError):
    """An utterance could not be written (the message says where and why)."""


def synth_shard(job: Dict) -> Dict:
    """Worker: speak and write one shard's utterances; returns their lengths in samples and
    their phone segments (:func:`~s3prl_ekd.corpus.alignment.phone_segments`)."""
    from s3prl_ekd.corpus.espeak import Espeak

    espeak = Espeak(seed=job["seed"])
    lengths, alignments = [], []
    for utt in job["utterances"]:
        espeak.set_voice(utt["voice"]["accent"], utt["voice"]["variant"])
        p = utt["prosody"]
        espeak.set_prosody(rate=p["rate"], pitch=p["pitch"], range_=p["range"], volume=p["volume"],
                            wordgap=p.get("wordgap", 0))
        wav = to_16k(espeak.synth(utt["text"]), espeak.sample_rate)
        if wav.size == 0:
            raise RuntimeError(f"eSpeak NG produced no audio for {utt['path']!r} ({utt['text']!r})")
        _write_audio(os.path.join(job["root"], utt["path"]), wav)
        lengths.append(int(wav.size))
        alignments.append(phone_segments(espeak.last_phonemes, espeak.sample_rate, int(wav.size)))
    return {"index": job["index"], "lengths": lengths, "alignments": alignments}


def synthesise(
    utterances: Sequence[Dict],
    root: str,
    seed: int,
    workers: Optional[int] = None,
    progress: Optional[Callable[[str], None]] = None,
) -> Tuple[List[int], List[List[Tuple[str, int, int]]]]:
    """Write every utterance under ``root``; returns lengths (samples) and phone segments, in plan order."""
    shards = [utterances[i : i + SHARD_SIZE] for i in range(0, len(utterances), SHARD_SIZE)]
    jobs = [{"index": i, "seed": seed * 1_000_003 + i, "root": root, "utterances": list(s)}
            for i, s in enumerate(shards)]
    workers = max(1, min(workers or os.cpu_count() or 1, len(jobs)))
    results: Dict[int, Dict] = {}
    start, done = time.time(), 0
    ctx = mp.get_context("spawn")  # a clean interpreter: no library state inherited
    with ctx.Pool(workers, maxtasksperchild=1) as pool:
        for res in pool.imap_unordered(synth_shard, jobs):
            results[res["index"]] = res
            done += len(res["lengths"])
            if progress:
                progress(f"[corpus] {done}/{len(utterances)} utterances "
                         f"({len(results)}/{len(jobs)} shards, {time.time() - start:.1f} s)")
    lengths = [n for i in range(len(jobs)) for n in results[i]["lengths"]]
    alignments = [a for i in range(len(jobs)) for a in results[i]["alignments"]]
    return lengths, alignments


def default_progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)
