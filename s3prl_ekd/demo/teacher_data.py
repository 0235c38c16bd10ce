"""Labelled training audio for the demo's teachers, read from the built-in corpus's own layouts.

Only training splits are used (LibriSpeech ``train-clean-100``, VoxCeleb1 ``iden_split`` 1), so
no teacher has heard a test utterance of the mini tasks.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import soundfile as sf
import torch

from s3prl_ekd.corpus.alignment import ALIGNMENT_DIR, read_alignments
from s3prl_ekd.demo.teacher_training import LabelledUtterance
from s3prl_ekd.io import SAMPLE_RATE

SILENCE = {"SIL", "SPN"}  # label 0 in phone spans
LIBRI_TRAIN = "train-clean-100"


class TeacherDataError(RuntimeError):
    """The corpus lacks a file the teachers' training needs."""


def _read_wav(path: Path) -> torch.Tensor:
    wav, rate = sf.read(str(path), dtype="float32")
    if rate != SAMPLE_RATE:
        raise TeacherDataError(f"{path} is sampled at {rate} Hz; the corpus must be 16 kHz: remake it")
    return torch.from_numpy(wav)


def _unstressed(phone: str) -> str:
    return re.sub(r"\d$", "", phone)


def read_lexicon(path: Path) -> Dict[str, List[str]]:
    """``WORD PH1 PH2 ...`` a line -> {word: phones without stress digits}."""
    if not Path(path).is_file():
        raise TeacherDataError(f"lexicon {path} is missing: build the corpus first (s3prl_ekd.corpus.make_corpus)")
    lexicon = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if parts:
            # stress is not what the phone teacher should learn; the PR task keeps it
            lexicon[parts[0]] = [_unstressed(p) for p in parts[1:]]
    return lexicon


def librispeech_phones(corpus_root: Path) -> Tuple[List[LabelledUtterance], List[str]]:
    """LibriSpeech training utterances with phone ids (1-based), speaker ids and phone spans from
    ``alignments/`` (where the corpus has them); and the phone list."""
    root = Path(corpus_root)
    lexicon = read_lexicon(root / "lexicon" / "librispeech-lexicon.txt")
    align_file = root / ALIGNMENT_DIR / f"{LIBRI_TRAIN}.txt"
    alignments = read_alignments(str(align_file)) if align_file.is_file() else {}
    spoken = {_unstressed(p) for segs in alignments.values() for p, _, _ in segs} - SILENCE
    phones = sorted({p for ps in lexicon.values() for p in ps} | spoken)
    ids = {p: i + 1 for i, p in enumerate(phones)}  # 0 is the CTC blank, and silence in spans
    split = root / "LibriSpeech" / LIBRI_TRAIN
    transcripts = sorted(split.glob("*/*/*.trans.txt"))
    if not transcripts:
        raise TeacherDataError(f"no transcripts under {split}: build the corpus first")
    speakers = sorted({t.parent.parent.name for t in transcripts})
    utts = []
    for trans in transcripts:
        for line in trans.read_text(encoding="utf-8").splitlines():
            uid, _, text = line.partition(" ")
            missing = [w for w in text.split() if w not in lexicon]
            if missing:
                raise TeacherDataError(f"{trans}: words {missing[:3]} are not in the lexicon: remake the corpus")
            labels = [ids[p] for w in text.split() for p in lexicon[w]]
            wav = _read_wav(trans.parent / f"{uid}.flac")
            segments = None
            if uid in alignments:
                segments = [(ids.get(_unstressed(p), 0), a, b) for p, a, b in alignments[uid]]
            utts.append(LabelledUtterance(wav, labels, speakers.index(trans.parent.parent.name), segments))
    return utts, phones


def voxceleb1_speakers(corpus_root: Path) -> Tuple[List[LabelledUtterance], List[str]]:
    """VoxCeleb1 training utterances (iden split 1) with speaker ids; and the speaker list."""
    root = Path(corpus_root) / "VoxCeleb1"
    split_file = root / "iden_split.txt"
    if not split_file.is_file():
        raise TeacherDataError(f"{split_file} is missing: build the corpus first")
    rows = [line.split() for line in split_file.read_text().splitlines() if line.strip()]
    train = sorted(rel for s, rel in rows if s == "1")
    speakers = sorted({rel.split("/")[0] for rel in train})
    utts = [
        LabelledUtterance(_read_wav(root / "dev" / "wav" / rel), [], speakers.index(rel.split("/")[0]))
        for rel in train
    ]
    return utts, speakers


def speaker_utterances(
    corpus_root: Path, libri: Optional[List[LabelledUtterance]] = None
) -> Tuple[List[LabelledUtterance], int]:
    """Every training utterance with a speaker label (LibriSpeech and VoxCeleb1 speakers apart)."""
    if libri is None:
        libri, _ = librispeech_phones(corpus_root)
    vox, vox_speakers = voxceleb1_speakers(corpus_root)
    offset = len(vox_speakers)
    n_libri = 1 + max((u.speaker for u in libri), default=-1)
    moved = [LabelledUtterance(u.wav, u.phones, u.speaker + offset) for u in libri]
    return vox + moved, offset + n_libri


def cap_length(utts: List[LabelledUtterance], max_seconds: float) -> List[LabelledUtterance]:
    """Drop utterances longer than ``max_seconds`` (keeps batches small on CPU)."""
    limit = int(max_seconds * SAMPLE_RATE)
    return [u for u in utts if len(u.wav) <= limit]


__all__ = ["librispeech_phones", "voxceleb1_speakers", "speaker_utterances", "cap_length", "read_lexicon"]
