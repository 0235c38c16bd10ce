"""Corpus sizes and the utterance plan: every file, its text, voice and prosody, from a seed.

The plan is pure data made by seeded ``random.Random`` streams, one per layout, so changing the
size of one layout leaves the others' utterances unchanged.
"""

from __future__ import annotations

import random
import string
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Dict, List, Union

from s3prl_ekd.corpus.text import load_words, make_sentence
from s3prl_ekd.corpus.voices import EMOTIONS, Speaker, make_speakers, utterance_prosody

LIBRI_SPLITS = ("train-clean-100", "dev-clean", "test-clean")
IEMOCAP_SESSIONS = 5
IEMOCAP_LABELS = {"neu": 0, "hap": 1, "ang": 2, "sad": 3}  # SUPERB's four classes, s3prl's ids


@dataclass(frozen=True)
class CorpusSize:
    """How much of each layout to make (counts per speaker / chapter / dialog)."""

    libri_train_speakers: int
    libri_train_chapters: int  # chapters per training speaker
    libri_train_utts: int  # utterances per chapter
    libri_eval_speakers: int  # for dev-clean and for test-clean each (one chapter each)
    libri_eval_utts: int
    vox_speakers: int
    vox_videos: int  # videos per speaker
    vox_train: int  # utterances per speaker in iden_split 1 / 2 / 3
    vox_dev: int
    vox_test: int
    iemocap_dialogs: int  # dialogs per session
    iemocap_utts: int  # utterances per speaker, emotion and dialog
    min_words: int = 4
    max_words: int = 9

    def to_dict(self) -> Dict[str, int]:
        return asdict(self)


SIZES: Dict[str, CorpusSize] = {
    # seconds to make; for the tests (every layout present, every class and split non-empty)
    "tiny": CorpusSize(
        libri_train_speakers=4, libri_train_chapters=1, libri_train_utts=3,
        libri_eval_speakers=2, libri_eval_utts=2,
        vox_speakers=4, vox_videos=2, vox_train=2, vox_dev=1, vox_test=1,
        iemocap_dialogs=1, iemocap_utts=1, min_words=3, max_words=6,
    ),
    # the demo: ~1,500 utterances (~1 hour of speech), sized so the four mini tasks train on CPU
    "demo": CorpusSize(
        libri_train_speakers=24, libri_train_chapters=2, libri_train_utts=12,
        libri_eval_speakers=4, libri_eval_utts=10,
        vox_speakers=24, vox_videos=4, vox_train=14, vox_dev=3, vox_test=3,
        iemocap_dialogs=2, iemocap_utts=5,
    ),
}


def resolve_size(size: Union[str, CorpusSize, Dict], **overrides: int) -> CorpusSize:
    """A preset name (``tiny``, ``demo``), a :class:`CorpusSize` or a dict, plus field overrides."""
    if isinstance(size, str):
        if size not in SIZES:
            raise ValueError(f"unknown corpus size {size!r}: choose one of {sorted(SIZES)}")
        size = SIZES[size]
    elif isinstance(size, dict):
        size = CorpusSize(**size)
    names = {f.name for f in fields(CorpusSize)}
    unknown = set(overrides) - names
    if unknown:
        raise ValueError(f"unknown corpus size field(s) {sorted(unknown)}: known are {sorted(names)}")
    size = replace(size, **overrides)
    for f in fields(size):
        if getattr(size, f.name) < 1:
            raise ValueError(f"corpus size field {f.name} must be >= 1, got {getattr(size, f.name)}")
    if size.min_words > size.max_words:
        raise ValueError("corpus size: min_words must be <= max_words")
    return size


@dataclass
class Utterance:
    """One file to synthesise: where it goes, what is said, how, and its labels (``meta``)."""

    path: str  # relative to the corpus root; .flac or .wav
    text: str
    voice: Dict  # accent, variant
    prosody: Dict  # pitch, range, rate, volume
    meta: Dict = field(default_factory=dict)

    def to_dict(self) -> Dict:
        return asdict(self)


def _utt(path: str, text: str, spk: Speaker, emotion: str, rng: random.Random, **meta) -> Utterance:
    return Utterance(
        path=path, text=text, voice={"accent": spk.accent, "variant": spk.variant},
        prosody=utterance_prosody(spk, emotion, rng), meta=meta,
    )


def _unique_ints(rng: random.Random, n: int, lo: int, hi: int) -> List[int]:
    return rng.sample(range(lo, hi), n)


def librispeech_plan(size: CorpusSize, seed: int, words: List[str]) -> List[Utterance]:
    """LibriSpeech/<split>/<speaker>/<chapter>/<speaker>-<chapter>-<nnnn>.flac, disjoint speakers."""
    rng = random.Random(f"{seed}-librispeech")
    counts = {
        "train-clean-100": (size.libri_train_speakers, size.libri_train_chapters, size.libri_train_utts),
        "dev-clean": (size.libri_eval_speakers, 1, size.libri_eval_utts),
        "test-clean": (size.libri_eval_speakers, 1, size.libri_eval_utts),
    }
    n_speakers = sum(c[0] for c in counts.values())
    speakers = make_speakers(n_speakers, rng)
    speaker_ids = _unique_ints(rng, n_speakers, 100, 10000)
    utts, k = [], 0
    for split in LIBRI_SPLITS:
        n_spk, n_chap, n_utt = counts[split]
        for _ in range(n_spk):
            spk, spk_id = speakers[k], speaker_ids[k]
            k += 1
            for chap in sorted(_unique_ints(rng, n_chap, 1000, 200000)):
                for i in range(n_utt):
                    text = make_sentence(words, rng, size.min_words, size.max_words).upper()
                    uid = f"{spk_id}-{chap}-{i:04d}"
                    utts.append(_utt(f"LibriSpeech/{split}/{spk_id}/{chap}/{uid}.flac", text, spk,
                                     "neu", rng, layout="librispeech", split=split, id=uid,
                                     speaker=spk_id, chapter=chap))
    return utts


def _video_id(rng: random.Random) -> str:
    alphabet = string.ascii_letters + string.digits + "-_"
    return rng.choice(string.ascii_letters) + "".join(rng.choice(alphabet) for _ in range(10))


def voxceleb1_plan(size: CorpusSize, seed: int, words: List[str]) -> List[Utterance]:
    """VoxCeleb1/dev/wav/id1xxxx/<video>/<nnnnn>.wav, each speaker in all three iden splits."""
    rng = random.Random(f"{seed}-voxceleb1")
    speakers = make_speakers(size.vox_speakers, rng)
    utts = []
    for k, spk in enumerate(speakers):
        spk_id = f"id{10001 + k}"  # s3prl's label is int(id[2:]) - 10001
        videos = [_video_id(rng) for _ in range(size.vox_videos)]
        splits = [1] * size.vox_train + [2] * size.vox_dev + [3] * size.vox_test
        rng.shuffle(splits)
        per_video: Dict[str, int] = {}
        for i, split in enumerate(splits):
            video = videos[i % len(videos)]
            per_video[video] = per_video.get(video, 0) + 1
            rel = f"{spk_id}/{video}/{per_video[video]:05d}.wav"
            text = make_sentence(words, rng, size.min_words, size.max_words)
            utts.append(_utt(f"VoxCeleb1/dev/wav/{rel}", text, spk, "neu", rng,
                             layout="voxceleb1", split=split, rel=rel, speaker=spk_id))
    return utts


def iemocap_plan(size: CorpusSize, seed: int, words: List[str]) -> List[Utterance]:
    """IEMOCAP/SessionN/sentences/wav/<dialog>/<dialog>_<F|M><nnn>.wav, two speakers a session."""
    rng = random.Random(f"{seed}-iemocap")
    utts = []
    for s in range(1, IEMOCAP_SESSIONS + 1):
        # actors: a narrower spread of base pitch, range and rate than other speakers, so the
        # emotion offsets (voices.EMOTIONS) outweigh who is speaking
        voices = {g: replace(make_speakers(1, rng, high=g == "F")[0], pitch=rng.randint(40, 60),
                             range=rng.randint(45, 60), rate=rng.randint(160, 185)) for g in "FM"}
        for d in range(1, size.iemocap_dialogs + 1):
            dialog = f"Ses{s:02d}{'FM'[(d - 1) % 2]}_impro{d:02d}"
            lines = [(g, e) for g in "FM" for e in EMOTIONS for _ in range(size.iemocap_utts)]
            rng.shuffle(lines)
            counter = {"F": 0, "M": 0}
            for gender, emotion in lines:
                name = f"{dialog}_{gender}{counter[gender]:03d}"
                counter[gender] += 1
                text = make_sentence(words, rng, size.min_words, size.max_words)
                utts.append(_utt(f"IEMOCAP/Session{s}/sentences/wav/{dialog}/{name}.wav", text,
                                 voices[gender], emotion, rng, layout="iemocap", session=s,
                                 dialog=dialog, name=name, label=emotion))
    return utts


def make_plan(size: CorpusSize, seed: int) -> List[Utterance]:
    """Every utterance of the corpus, in a fixed order."""
    words = load_words()
    return (librispeech_plan(size, seed, words) + voxceleb1_plan(size, seed, words)
            + iemocap_plan(size, seed, words))
