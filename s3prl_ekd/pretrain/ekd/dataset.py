"""Length-bucketed LibriSpeech waveforms for pretraining, read from s3prl's ``len_for_bucket`` tables.

A length table is s3prl's CSV (``preprocess/generate_len_for_bucket.py``): an unnamed index
column, then ``file_path`` (relative to the LibriSpeech root), ``length`` (samples) and an empty
``label``, longest first. Utterances are sorted by length and cut into buckets of
``train_batch_size`` (so a batch needs little padding), and each utterance longer than
``sequence_length`` is cropped to a random window (DistilHuBERT: 250 000 samples).

Files are read by :func:`s3prl_ekd.io.audio.load_audio` (cropped while reading, resampled,
downmixed); a file it refuses is skipped with a counted warning (``AudioStats``), and files
missing at start are dropped with one warning.

Determinism: the bucket order of an epoch and every crop offset are functions of
(seed, epoch, bucket), never of a global random state, so a resumed run sees exactly the
batches the uninterrupted run would have seen.

Each batch also says which utterance and window every row is (``WaveBatch.keys``, an
:class:`UtteranceKey` per row): the teacher-target cache (``s3prl_ekd.teachers.target_cache``) keys on it.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import random
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Dict, Iterator, List, Mapping, NamedTuple, Optional, Sequence, Tuple

import soundfile as sf
import torch
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from s3prl_ekd.io import SAMPLE_RATE
from s3prl_ekd.io.atomic import atomic_write_text
from s3prl_ekd.io.audio import AudioError, AudioSpec, AudioStats, load_audio_window, missing_files
from s3prl_ekd.pretrain.ekd.config import make_datarc

logger = logging.getLogger(__name__)
LIBRISPEECH_SETS = (
    "train-clean-100", "train-clean-360", "train-other-500",
    "dev-clean", "dev-other", "test-clean", "test-other",
)


class DataConfigError(ValueError):
    """A data setting (``pretrain_expert.datarc``) or length table that cannot be used."""


# ----- length tables --------------------------------------------------------------------------
def read_length_table(path: os.PathLike | str) -> List[Tuple[str, int]]:
    """(file_path, length) rows of one s3prl length table."""
    path = Path(path)
    if not path.is_file():
        raise DataConfigError(
            f"length table {path} does not exist: write it with `s3prl-ekd prepare-lengths LIBRISPEECH_ROOT "
            f"--output {path.parent}` or fix `pretrain_expert.datarc.file_path` / `sets`"
        )
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or not {"file_path", "length"} <= set(reader.fieldnames):
            raise DataConfigError(f"length table {path} lacks the columns file_path,length of s3prl's format")
        return [(row["file_path"], int(row["length"])) for row in reader]


def write_length_table(rows: Sequence[Tuple[str, int]], path: os.PathLike | str) -> Path:
    """Write (file_path, length) rows in s3prl's format, longest first."""
    rows = sorted(rows, key=lambda r: (-r[1], r[0]))
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(["", "file_path", "length", "label"])
    for i, (file_path, length) in enumerate(rows):
        writer.writerow([i, file_path, int(length), ""])
    return atomic_write_text(path, text.getvalue())


def scan_lengths(root: os.PathLike | str, subset: str, extension: str = ".flac") -> List[Tuple[str, int]]:
    """(path relative to ``root``, samples) of every audio file under ``root/subset``."""
    root = Path(root)
    rows = []
    for file in sorted((root / subset).rglob(f"*{extension}")):
        try:
            info = sf.info(str(file))
        except RuntimeError as e:
            raise DataConfigError(f"{file} cannot be read as audio ({e}): repair or remove it") from None
        # lengths at 16 kHz, as the dataset resamples other rates while reading
        rows.append((file.relative_to(root).as_posix(), int(info.frames * SAMPLE_RATE // info.samplerate)))
    return rows


# ----- dataset ------------------------------------------------------------------------------
class UtteranceKey(NamedTuple):
    """Which audio one row of a batch holds: the file (relative to the corpus root, and its size)
    and the window read from it (first frame in the file's sample rate, samples at 16 kHz)."""

    path: str
    start: int
    length: int
    file_bytes: int
    cropped: bool  # a random window of a longer file (a new one each epoch)


class Bucket(list):
    """The waveforms of one bucket (a list, as before), with the :class:`UtteranceKey` of each
    and the audio counts (:class:`~s3prl_ekd.io.audio.AudioStats`: skips, repairs) its reading added."""

    def __init__(self, wavs: Sequence[torch.Tensor] = (), keys: Optional[Sequence[UtteranceKey]] = None,
                 audio_counts: Optional[Mapping[str, int]] = None):
        super().__init__(wavs)
        self.keys: Optional[List[UtteranceKey]] = list(keys) if keys is not None else None
        self.audio_counts: Dict[str, int] = dict(audio_counts or {})
        # the teacher-target cache's entries of these utterances, read in the loader worker
        # (None where it holds none); None altogether when no cache is read here
        self.cached: Optional[List[Optional[List[torch.Tensor]]]] = None


@dataclass
class WaveBatch:
    """A padded batch of waveforms (B x L, float32), their lengths and, from the pretraining
    loader, which utterance and window each row is (``keys``; None for hand-made batches)."""

    wavs: torch.Tensor
    lengths: torch.Tensor
    keys: Optional[List[UtteranceKey]] = None
    # files skipped or repaired while this batch was read (in whichever loader worker read it)
    audio_counts: Dict[str, int] = field(default_factory=dict)
    # per row, its targets read from the teacher-target cache by the loader worker, or None
    cached: Optional[List[Optional[List[torch.Tensor]]]] = None

    def as_list(self) -> List[torch.Tensor]:
        """The unpadded waveforms (views), as s3prl upstreams take them."""
        return [w[:n] for w, n in zip(self.wavs, self.lengths.tolist())]

    def pin_memory(self) -> "WaveBatch":
        return replace(self, wavs=self.wavs.pin_memory(), lengths=self.lengths.pin_memory())


class BucketedWaveDataset(Dataset):
    """Buckets of utterances of similar length; item ``(epoch, bucket)`` is one cropped batch."""

    def __init__(
        self,
        libri_root: str,
        file_path: str,
        sets: Sequence[str],
        bucket_size: int,
        sequence_length: int = 250000,
        max_timestep: int = 0,
        seed: int = 0,
        bucketing: bool = True,
        target_cache=None,
    ):
        if not libri_root or not Path(libri_root).is_dir():
            raise DataConfigError(
                f"pretrain_expert.datarc.libri_root {libri_root!r} is not a folder: give the LibriSpeech root"
            )
        if bucket_size < 1:
            raise DataConfigError(f"pretrain_expert.datarc.train_batch_size must be >= 1, got {bucket_size}")
        if not sets:
            raise DataConfigError("pretrain_expert.datarc.sets is empty: list the subsets to train on")
        self.libri_root = Path(libri_root)
        # a TargetCache: its entries of each bucket are read here, in the loader's workers
        self.target_cache = target_cache
        self.sequence_length = int(sequence_length)
        self.seed = int(seed)
        self.spec = AudioSpec(max_samples=self.sequence_length if self.sequence_length > 0 else None)
        self.stats = AudioStats()
        rows = [r for s in sets for r in read_length_table(Path(file_path) / f"{s}.csv")]
        missing = set(missing_files([p for p, _ in rows], str(self.libri_root)))
        if missing:
            logger.warning(
                f"[dataset] {len(missing)} file(s) of the length tables are missing under {self.libri_root} "
                f"and are left out, e.g. {sorted(missing)[:3]}"
            )
            rows = [r for r in rows if r[0] not in missing]
        # s3prl's max_timestep: > 0 drops utterances at least that long, < 0 those at most -that long
        if max_timestep > 0:
            rows = [r for r in rows if r[1] < max_timestep]
        elif max_timestep < 0:
            rows = [r for r in rows if r[1] > -max_timestep]
        rows.sort(key=lambda r: (-r[1], r[0]))  # longest first, as s3prl; ties by name for determinism
        if not bucketing:  # random batches, to measure what bucketing saves (s3prl-ekd bench)
            random.Random(f"{self.seed}/unbucketed").shuffle(rows)
        self.num_samples = len(rows)
        self.buckets: List[List[str]] = [
            [p for p, _ in rows[i : i + bucket_size]] for i in range(0, len(rows), bucket_size)
        ]
        # s3prl drops a trailing bucket of a single utterance; we keep it only if it is the only one
        if len(self.buckets) > 1 and len(self.buckets[-1]) == 1:
            self.buckets.pop()
        if not self.buckets:
            raise DataConfigError(f"no utterances left in {file_path} for sets {list(sets)} (max_timestep={max_timestep})")

    def __len__(self) -> int:
        return len(self.buckets)

    def __getitem__(self, item: Tuple[int, int] | int) -> Bucket:
        """The bucket's waveforms, each longer than ``sequence_length`` cropped to a random window
        (a list, whose ``keys`` say which file and window each one is)."""
        epoch, index = item if isinstance(item, tuple) else (0, item)
        before = Counter(self.stats.counts)
        # a bucket whose every file fails is replaced by the next one (a dead disk sector must
        # not end a days-long run); only a corpus with no readable file left is an error
        for k in range(len(self.buckets)):
            wavs = self._read_bucket(epoch, (index + k) % len(self.buckets))
            if wavs:
                if k:
                    logger.warning(f"[dataset] every file of bucket {index} was skipped: bucket {(index + k) % len(self.buckets)} trains in its place")
                # the counts live in this (worker's) copy of the dataset: the batch carries them
                wavs.audio_counts = dict(Counter(self.stats.counts) - before)
                if self.target_cache is not None:
                    wavs.cached = self.target_cache.prefetch(wavs.keys)
                return wavs
        raise DataConfigError(
            f"no file of the length tables under {self.libri_root} can be read any more: "
            "repair them or write the length tables again"
        )

    def _read_bucket(self, epoch: int, index: int) -> Bucket:
        rng = random.Random(f"{self.seed}/{epoch}/{index}")
        wavs, keys = [], []
        for rel_path in self.buckets[index]:
            try:
                got = load_audio_window(self.libri_root / rel_path, self.spec, rng, self.stats)
            except AudioError as e:
                self.stats.skip(e)
                continue
            wavs.append(got.wav)
            keys.append(UtteranceKey(rel_path, got.start, len(got.wav), got.file_bytes, got.cropped))
        return Bucket(wavs, keys)

    @staticmethod
    def collate_fn(items: List[List[torch.Tensor]]) -> WaveBatch:
        """The loader's batch size is 1 bucket: pad its utterances into one batch (keys kept)."""
        wavs = items[0]
        keys = getattr(wavs, "keys", None)
        return WaveBatch(pad_sequence(list(wavs), batch_first=True), torch.tensor([len(w) for w in wavs]), keys,
                         dict(getattr(wavs, "audio_counts", {})), getattr(wavs, "cached", None))


class ResumableBucketSampler(DistributedSampler):
    """torch's ``DistributedSampler`` over buckets that yields ``(epoch, bucket)`` and can start mid-epoch.

    Each ``iter()`` is the next epoch (s3prl's Runner re-iterates one loader), so the order is a
    function of (seed, epoch) only; ``skip`` drops the batches a resumed run already trained on.
    With one process it is a plain seeded shuffle.
    """

    def __init__(self, dataset: Dataset, num_replicas: int = 1, rank: int = 0, seed: int = 0):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=False)
        self._skip = 0

    def resume_at(self, batches_done: int) -> None:
        """Position the sampler after ``batches_done`` batches of this rank (over all epochs)."""
        per_epoch = len(self)
        self.set_epoch(batches_done // per_epoch)
        self._skip = batches_done % per_epoch

    def __iter__(self) -> Iterator[Tuple[int, int]]:
        epoch, skip = self.epoch, self._skip
        indices = list(super().__iter__())[skip:]
        self._skip = 0
        self.set_epoch(epoch + 1)
        return iter([(epoch, i) for i in indices])


def make_train_loader(
    datarc: Mapping,
    sequence_length: int,
    seed: int = 0,
    device: str = "cpu",
    rank: int = 0,
    world: int = 1,
    batches_done: int = 0,
    target_cache=None,
) -> DataLoader:
    """The training loader of ``pretrain_expert.datarc``: one (bucketed) batch per item, workers and
    pinned memory as configured (pinning only pays for a GPU), positioned after ``batches_done``;
    with a ``target_cache`` (:class:`~s3prl_ekd.teachers.target_cache.TargetCache`) the workers also read
    each batch's cached teacher targets, so the training process does not wait on the disk."""
    datarc = make_datarc(datarc)  # the defaults of what it leaves out
    dataset = BucketedWaveDataset(
        libri_root=datarc["libri_root"],
        file_path=datarc["file_path"],
        sets=datarc["sets"],
        bucket_size=datarc["train_batch_size"],
        sequence_length=sequence_length,
        max_timestep=datarc["max_timestep"],
        seed=seed,
        bucketing=datarc["bucketing"],
        target_cache=target_cache,
    )
    sampler = ResumableBucketSampler(dataset, num_replicas=world, rank=rank, seed=seed)
    sampler.resume_at(batches_done)
    return DataLoader(
        dataset,
        batch_size=1,  # a bucket is a batch
        sampler=sampler,
        num_workers=datarc["num_workers"],
        collate_fn=dataset.collate_fn,
        pin_memory=bool(datarc["pin_memory"]) and torch.device(device).type == "cuda",
    )
