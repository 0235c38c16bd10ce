"""An optional on-disk cache of teacher targets (fp16), so epochs after the first skip the teachers.

Switched on by the upstream config's ``target_cache:`` block (off by default)::

    target_cache:
      path: /scratch/ekd_targets      # any folder; shared by all ranks of a DDP run

**What is stored.** For each utterance, the plan's targets (the list the loss consumes, one
``T x D`` tensor per plan target, the utterance's own frames only, no padding) in fp16, one file
per utterance. They are read back as fp32, the dtype the loss computes in. A step uses the
fp16-rounded targets whether they were just computed or read, so a cold and a warm run train
on the same numbers.

**Keys.** An entry is found by the utterance (:class:`~s3prl_ekd.pretrain.ekd.dataset.UtteranceKey`:
the file's path relative to the corpus root, its size in bytes, the first frame and the number
of samples read) under a folder named by a fingerprint of everything that changes the target
values (:func:`fingerprint`): each teacher (upstream, sizes, and a SHA-256 of its checkpoint
file, or of its weights for hub-downloaded teachers), the target plan (without the loss
weights), the teachers' autocast dtype on this device, the s3prl version and this cache's format.
A changed teacher or plan therefore reads a new, empty folder, never stale targets; the old
folder stays until deleted (``fingerprint.json`` in each folder says what it was made from).

**Reads ahead.** The pretraining loader's workers read each batch's entries (:meth:`TargetCache.prefetch`)
and the batch carries them (``WaveBatch.cached``), so the training process does not wait on the disk.

**Exact, batch-independent targets.** With the cache on, teachers are called once per distinct
length on the utterances that missed (the ``padded_batch: false`` way, whatever that switch
says), so an utterance's targets never depend on the batch it came in. A batch whose every
utterance hits does no teacher forward at all.

**Limits.** Random crops (utterances longer than ``task.sequence_length`` get a new window each
epoch) would never hit again and would fill the disk, so they are not stored: they are
computed every step. The cache pays for corpora whose utterances are at most the crop length,
or with ``sequence_length: 0``. Distortions are no limit: teachers hear the clean audio.
Writes are atomic (a temp file renamed over the entry), so concurrent ranks and crashes never
leave half a file; an entry that cannot be read or fails its checks is recomputed and rewritten
with a warning naming the file.

**Disk.** ``frames/s x 3600 x sum(target dims) x 2 bytes`` per hour of audio: at 50 frames a
second, 276 MB per 768-d target, 0.83 GB for three (single, average), 2.5 GB for multihead or
concat with three teachers; plus about 2 kB per utterance of file overhead.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Sequence

import torch
from torch.nn.utils.rnn import pad_sequence

from s3prl_ekd.config.reader import from_mapping
from s3prl_ekd.config.values import ConfigValueError
from s3prl_ekd.distill.targets import TargetPlan
from s3prl_ekd.io.atomic import atomic_write, atomic_write_text

logger = logging.getLogger(__name__)

FORMAT = "s3prl-ekd/target-cache"
FORMAT_VERSION = 1
STORE_DTYPE = torch.float16


class TargetCacheError(ValueError):
    """A `target_cache` config block that cannot be used."""


@dataclass(frozen=True)
class TargetCacheConfig:
    """The ``target_cache:`` block (null: off)."""

    path: str  # the folder the cache is written to; required when the block is given

    def __post_init__(self):
        if not self.path.strip():
            raise ConfigValueError(f"`target_cache.path` must be a folder path (the cache is written there), got {self.path!r}")
        object.__setattr__(self, "path", os.path.expanduser(self.path))  # `~` as a shell reads it


def make_target_cache_config(given: object, where: str = "target_cache") -> Optional[Dict[str, str]]:
    """The ``target_cache:`` block checked: None (off) or ``{"path": folder}``; unknown keys are errors."""
    if given is None or given is False:
        return None
    if not isinstance(given, Mapping):
        raise TargetCacheError(f"{where} must be a mapping like {{path: /scratch/ekd_targets}} or null (off), got {given!r}")
    cfg = from_mapping(TargetCacheConfig, given, where, TargetCacheError)
    return {"path": cfg.path}


# ----- fingerprint ----------------------------------------------------------------------------
def file_sha256(path: os.PathLike | str, chunk: int = 1 << 22) -> str:
    """SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            block = f.read(chunk)
            if not block:
                return h.hexdigest()
            h.update(block)


def weights_sha256(module: torch.nn.Module) -> str:
    """SHA-256 of a module's parameters and buffers (names, shapes, dtypes and values)."""
    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def fingerprint(teachers, plan: TargetPlan, device: torch.device | str) -> Dict[str, object]:
    """Everything that changes target values, as plain data (its hash names the cache folder).

    ``teachers`` is a :class:`~s3prl_ekd.teachers.ensemble.TeacherEnsemble`. The exact speed-ups
    (inference mode, truncation, compile up to float rounding) and ``padded_batch`` (the cache
    always calls teachers per length) do not enter it; the autocast dtype does.
    """
    import s3prl

    described = []
    for d in teachers.describe():
        entry = {k: v for k, v in d.items() if k not in ("ckpt", "weight")}  # where the file lies is no value
        ckpt = d.get("ckpt")
        if ckpt and os.path.isfile(ckpt):
            entry["ckpt_sha256"] = file_sha256(ckpt)
        else:  # a hub download (or a URL): hash the weights as loaded
            entry["weights_sha256"] = weights_sha256(teachers.teachers[d["name"]].expert)
        described.append(entry)
    plan_data = plan.to_dict()
    for t in plan_data["targets"]:
        t.pop("weight", None)  # a loss weight changes no target
    dtype = teachers.speedups.autocast_dtype(torch.device(device))
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "teachers": described,
        "plan": plan_data,
        "teacher_autocast": str(dtype).replace("torch.", "") if dtype is not None else "fp32",
        "teacher_calls": "per-length",
        "stored_dtype": "float16",
        "s3prl": getattr(s3prl, "__version__", "unknown"),
    }


def fingerprint_id(data: Mapping) -> str:
    """The folder name of a fingerprint: 16 hex digits of the SHA-256 of its canonical JSON."""
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


# ----- the cache ------------------------------------------------------------------------------
def _key_fields(key) -> List[object]:
    return [str(key.path), int(key.start), int(key.length), int(key.file_bytes)]


def _crc(tensors: Sequence[torch.Tensor]) -> int:
    crc = 0
    for t in tensors:
        crc = zlib.crc32(t.contiguous().view(torch.uint8).numpy(), crc)
    return crc


class TargetCache:
    """Per-utterance plan targets on disk (fp16), under a folder named by the fingerprint.

    ``counts`` holds ``hits``, ``misses``, ``uncached`` (random crops, never stored), ``written``,
    ``corrupt`` and ``not_stored`` (a full disk, a folder in an entry's place: the run goes on)
    since it was made.
    """

    def __init__(self, root: os.PathLike | str, plan: TargetPlan, fingerprint_data: Mapping):
        self.root = Path(root)
        self.plan = plan
        self.dims = [t.dim for t in plan.targets]
        self.fingerprint = dict(fingerprint_data)
        self.folder = self.root / fingerprint_id(self.fingerprint)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise TargetCacheError(f"target_cache.path {self.root}: cannot create {self.folder} ({e}): give a writable folder") from None
        info = self.folder / "fingerprint.json"
        if not info.is_file():
            atomic_write_text(info, json.dumps(self.fingerprint, indent=2, sort_keys=True))
        self.counts: Counter = Counter()
        self._storing_off = False  # set on a full or read-only disk: entries are computed, not stored
        self._warned = False

    @classmethod
    def from_config(cls, cfg: Optional[Mapping], teachers, plan: TargetPlan, device: torch.device | str) -> Optional["TargetCache"]:
        """The cache of an upstream config's ``target_cache`` block, or None when it is off."""
        cfg = make_target_cache_config(cfg)
        if cfg is None:
            return None
        return cls(cfg["path"], plan, fingerprint(teachers, plan, device))

    # ----- entries ------------------------------------------------------------------------
    def entry_path(self, key) -> Path:
        """Where the entry of ``key`` lives: ``<folder>/<2 hex>/<40 hex>.pt`` (hash of the key)."""
        digest = hashlib.sha1(json.dumps(_key_fields(key)).encode()).hexdigest()
        return self.folder / digest[:2] / f"{digest}.pt"

    def get(self, key) -> Optional[List[torch.Tensor]]:
        """The stored targets of ``key`` (fp16, CPU, one ``T x D`` per plan target), or None.

        A file that cannot be read or fails a check (format, key, shapes, checksum) is reported
        with a warning naming it and treated as a miss (it is rewritten by :meth:`put`).
        """
        path = self.entry_path(key)
        if not path.is_file():
            return None
        try:
            entry = torch.load(path, map_location="cpu", weights_only=True)
            targets = self._check(entry, key)
        except Exception as e:  # garbage raises anything from RuntimeError to UnicodeDecodeError
            self.counts["corrupt"] += 1
            logger.warning(f"[target_cache] {path} is unreadable or damaged ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}): recomputing it")
            return None
        return targets

    def _check(self, entry, key) -> List[torch.Tensor]:
        if not isinstance(entry, Mapping) or entry.get("format") != FORMAT or entry.get("format_version") != FORMAT_VERSION:
            raise ValueError("not a target-cache entry of this format version")
        if entry.get("key") != _key_fields(key):
            raise ValueError(f"it holds {entry.get('key')!r}, not {_key_fields(key)!r}")
        targets = entry.get("targets")
        if not isinstance(targets, list) or len(targets) != len(self.dims):
            raise ValueError(f"expected {len(self.dims)} targets")
        frames = {t.shape[0] if isinstance(t, torch.Tensor) and t.dim() == 2 else -1 for t in targets}
        if len(frames) != 1 or min(frames) < 1:
            raise ValueError("targets are not T x D tensors of one T >= 1")
        for t, dim in zip(targets, self.dims):
            if t.dtype != STORE_DTYPE or t.shape[1] != dim:
                raise ValueError(f"a target is {t.dtype} x {t.shape[1]}, expected {STORE_DTYPE} x {dim}")
        if entry.get("crc32") != _crc(targets):
            raise ValueError("checksum mismatch")
        return targets

    def put(self, key, targets: Sequence[torch.Tensor]) -> None:
        """Store ``targets`` (fp16 CPU ``T x D`` tensors that own their memory) atomically."""
        targets = [t.contiguous() for t in targets]
        entry = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "key": _key_fields(key),
            "targets": targets,
            "crc32": _crc(targets),
        }
        if self._storing_off:
            self.counts["not_stored"] += 1
            return
        path = self.entry_path(key)
        try:  # readers see the old entry, none, or the whole new one
            atomic_write(path, lambda f: torch.save(entry, f), durable=False)
        except (OSError, RuntimeError) as e:  # a full disk, a folder in the way: never the run's end
            self._not_stored(path, e)
            return
        self.counts["written"] += 1

    def _not_stored(self, path: Path, e: BaseException) -> None:
        """Count an entry that could not be stored; warn the first time; stop storing on a full or read-only disk."""
        self.counts["not_stored"] += 1
        full = isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS)
        if full or "No space left" in str(e):
            self._storing_off = True
        if not self._warned:
            self._warned = True
            logger.warning(
                f"[target_cache] cannot store {path} ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}): "
                + ("the disk is full or read-only, so no more entries are stored; " if self._storing_off else "")
                + "training goes on, computing the targets it cannot store (counted as not_stored)"
            )

    # ----- a batch ------------------------------------------------------------------------
    def prefetch(self, keys: Optional[Sequence]) -> Optional[List[Optional[List[torch.Tensor]]]]:
        """Each key's stored targets or None (random crops: None), read ahead, e.g. in a data
        loader worker; :meth:`batch_targets` takes them as ``prefetched``."""
        if keys is None:
            return None
        return [None if key.cropped else self.get(key) for key in keys]

    def batch_targets(
        self,
        keys: Sequence,
        wavs: Sequence[torch.Tensor],
        compute: Callable[[List[torch.Tensor]], List[torch.Tensor]],
        device: torch.device | str,
        dtype: torch.dtype = torch.float32,
        prefetched: Optional[Sequence[Optional[List[torch.Tensor]]]] = None,
    ) -> List[torch.Tensor]:
        """The plan targets of a batch (one ``B x T x D`` per target, zero-padded after each
        utterance's own frames), from the cache where it holds them.

        ``compute`` maps a list of equal-length waveforms to the plan targets (``n x T x D``
        each); it is called once per distinct length among the misses, never when all hit.
        Random crops (``key.cropped``) are computed and not stored. ``prefetched`` (from
        :meth:`prefetch`, one entry per key) replaces the reads here where it holds an entry.
        """
        if len(keys) != len(wavs):
            raise ValueError(f"{len(keys)} keys for {len(wavs)} waveforms")
        if prefetched is not None and len(prefetched) != len(keys):
            raise ValueError(f"{len(prefetched)} prefetched entries for {len(keys)} keys")
        rows: List[Optional[List[torch.Tensor]]] = []
        for i, key in enumerate(keys):
            if key.cropped:
                got = None
            else:
                # an entry the worker did not find may have been written since (or the batch is
                # older than the entry): look once more here, a stat when there is none
                got = prefetched[i] if prefetched is not None and prefetched[i] is not None else self.get(key)
            self.counts["uncached" if key.cropped else ("hits" if got is not None else "misses")] += 1
            rows.append(got)
        by_length: Dict[int, List[int]] = {}
        for i, row in enumerate(rows):
            if row is None:
                by_length.setdefault(len(wavs[i]), []).append(i)
        for idx in by_length.values():
            out = [t.detach().to(STORE_DTYPE).cpu() for t in compute([wavs[i] for i in idx])]
            for j, i in enumerate(idx):
                row = [t[j].clone() for t in out]  # its own storage: torch.save writes a view's whole storage
                if not keys[i].cropped:
                    self.put(keys[i], row)
                rows[i] = row
        return [
            pad_sequence([row[k] for row in rows], batch_first=True).to(device=device, dtype=dtype)
            for k in range(len(self.dims))
        ]

    def hit_rate(self) -> float:
        """Hits over all utterances looked up since the cache was made (0 before any)."""
        total = self.counts["hits"] + self.counts["misses"] + self.counts["uncached"]
        return self.counts["hits"] / total if total else 0.0
