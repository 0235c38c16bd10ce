"""What the probes are trained and scored on, read from the built-in corpus's own layouts.

Three label kinds, each with its fixed protocol:

* ``PR``: the phone (ARPAbet without stress; ``SIL`` for pauses) at 20 ms positions of the
  LibriSpeech utterances, from the corpus's exact alignments (``alignments/<split>.txt``). The
  probe trains on ``train-clean-100`` (a fixed, seeded subsample of positions), chooses its
  regularisation on ``dev-clean`` and is scored on every position of ``test-clean``. Positions,
  not an upstream's own frames, are the items, so every upstream is scored on the same frames
  whatever its frame rate: position ``t`` is the sample ``t * 320 + 160``, and an upstream's
  frame is the one holding it.
* ``SID``: the speaker of every VoxCeleb1 utterance (all three iden splits pooled: the test split
  alone is 3 utterances a speaker), scored by stratified k-fold cross-validation.
* ``ER``: the emotion of every IEMOCAP utterance, leave-one-session-out (the five folds of
  SUPERB's ER), every utterance predicted once by the fold that left its session out.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from s3prl_ekd.corpus import corpus_paths, read_manifest
from s3prl_ekd.corpus.alignment import frame_labels, read_alignments
from s3prl_ekd.corpus.plan import IEMOCAP_SESSIONS, LIBRI_SPLITS

POSITION_HOP = 320  # samples between scored positions: 20 ms, the students' and HuBERT's frame rate
PR_SPLITS = dict(zip(("train", "dev", "test"), LIBRI_SPLITS))


class ProbeDataError(ValueError):
    """The corpus lacks something the probes need."""


@dataclass(frozen=True)
class UpstreamSpec:
    """A row of the probe table: a name, an s3prl upstream name and its checkpoint (if any)."""

    name: str
    upstream: str
    ckpt: Optional[str] = None
    kind: str = ""  # floor | single | ensemble | teacher: which comparisons it enters


@dataclass(frozen=True)
class FrameSet:
    """Positions of one LibriSpeech split: which file, which sample, which phone, which utterance."""

    file: np.ndarray  # index into ProbeCorpus.files
    sample: np.ndarray  # the position's centre, in samples at 16 kHz
    label: np.ndarray  # phone id (index into ProbeCorpus.phones)
    utterance: np.ndarray  # 0-based utterance number within the split (the bootstrap's unit)


@dataclass(frozen=True)
class UtteranceSet:
    """Utterances with one label each, and the group (session) each belongs to, if any."""

    file: np.ndarray
    label: np.ndarray
    group: Optional[np.ndarray] = None


@dataclass(frozen=True)
class ProbeCorpus:
    """Every file the probes need features of, and the labelled items of the three tasks."""

    root: str
    files: List[str]  # relative to root
    phones: List[str]
    frames: Dict[str, FrameSet]  # train, dev, test
    speakers: UtteranceSet
    emotions: UtteranceSet
    selection: Dict = field(default_factory=dict)  # how the training positions were drawn

    def key(self) -> Dict:
        """What identifies these items (the feature cache's key)."""
        manifest = read_manifest(self.root) or {}
        return {"corpus": manifest.get("settings_hash"), "selection": self.selection,
                "files": len(self.files), "hop": POSITION_HOP}


def _unstressed(phone: str) -> str:
    return re.sub(r"\d$", "", phone)


def _libri_file(split: str, uid: str) -> str:
    spk, chap, _ = uid.split("-")
    return f"LibriSpeech/{split}/{spk}/{chap}/{uid}.flac"


def read_probe_corpus(root: str, max_train_frames: Optional[int] = 20000, seed: int = 0) -> ProbeCorpus:
    """The probes' items of the corpus under ``root``; ``max_train_frames`` training positions
    (drawn once from ``seed``; None keeps all)."""
    paths = corpus_paths(root)
    if read_manifest(root) is None:
        raise ProbeDataError(f"{paths.manifest} is missing: {root} is not a finished s3prl-ekd corpus "
                             "(make one with `s3prl-ekd make-corpus`)")
    files: List[str] = []
    index: Dict[str, int] = {}

    def file_id(rel: str) -> int:
        if rel not in index:
            index[rel] = len(files)
            files.append(rel)
        return index[rel]

    raw: Dict[str, List] = {}
    for name, split in PR_SPLITS.items():
        aligned = read_alignments(str(Path(paths.alignments) / f"{split}.txt"))
        rows = []
        for u, (uid, segs) in enumerate(sorted(aligned.items())):
            if not segs:
                raise ProbeDataError(f"{paths.alignments}/{split}.txt: utterance {uid} has no segments")
            n = segs[-1][2] // POSITION_HOP  # the last span ends at the file's last sample
            labels = frame_labels([(_unstressed(p), a, b) for p, a, b in segs], n, POSITION_HOP, default="SIL")
            f = file_id(_libri_file(split, uid))
            rows += [(f, t * POSITION_HOP + POSITION_HOP // 2, lab, u) for t, lab in enumerate(labels)]
        if not rows:
            raise ProbeDataError(f"{paths.alignments}/{split}.txt holds no utterance: remake the corpus")
        raw[name] = rows
    phones = sorted({r[2] for rows in raw.values() for r in rows})
    phone_id = {p: i for i, p in enumerate(phones)}
    frames = {}
    for name, rows in raw.items():
        arr = FrameSet(np.array([r[0] for r in rows]), np.array([r[1] for r in rows]),
                       np.array([phone_id[r[2]] for r in rows]), np.array([r[3] for r in rows]))
        frames[name] = arr
    total = len(frames["train"].file)
    if max_train_frames is not None and max_train_frames < total:
        keep = np.sort(np.random.default_rng(seed).choice(total, int(max_train_frames), replace=False))
        t = frames["train"]
        frames["train"] = FrameSet(t.file[keep], t.sample[keep], t.label[keep], t.utterance[keep])
    selection = {"max_train_frames": max_train_frames, "seed": seed, "train_positions": total}

    speakers = _voxceleb1(paths.iden_split, file_id)
    emotions = _iemocap(paths.iemocap_meta_data, file_id)
    return ProbeCorpus(paths.root, files, phones, frames, speakers, emotions, selection)


def _voxceleb1(iden_split: str, file_id) -> UtteranceSet:
    if not Path(iden_split).is_file():
        raise ProbeDataError(f"{iden_split} is missing: remake the corpus (s3prl-ekd make-corpus)")
    rels = sorted(line.split()[1] for line in Path(iden_split).read_text().splitlines() if line.strip())
    names = sorted({r.split("/")[0] for r in rels})
    return UtteranceSet(np.array([file_id(f"VoxCeleb1/dev/wav/{r}") for r in rels]),
                        np.array([names.index(r.split("/")[0]) for r in rels]))


def _iemocap(meta_dir: str, file_id) -> UtteranceSet:
    files, labels, groups = [], [], []
    for s in range(1, IEMOCAP_SESSIONS + 1):
        path = Path(meta_dir) / f"Session{s}" / "test_meta_data.json"
        if not path.is_file():
            raise ProbeDataError(f"{path} is missing: remake the corpus (s3prl-ekd make-corpus)")
        data = json.loads(path.read_text())
        ids = data["labels"]
        for entry in sorted(data["meta_data"], key=lambda e: e["path"]):
            files.append(file_id(f"IEMOCAP/{entry['path']}"))
            labels.append(int(ids[entry["label"]]))
            groups.append(s)
    return UtteranceSet(np.array(files), np.array(labels), np.array(groups))
