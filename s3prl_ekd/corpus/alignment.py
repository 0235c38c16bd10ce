"""Phone alignments of the corpus's LibriSpeech utterances, from eSpeak NG's own phoneme events.

The synthesiser reports where each phoneme starts as it speaks, so the corpus gets exact
forced alignments for free (what Montreal Forced Aligner gives for real LibriSpeech). They are
written beside the LibriSpeech layout, one file per split::

    alignments/<split>.txt      <utterance id> PHONE:start:end PHONE:start:end ...

with ARPAbet phones (stress digits as in the lexicon, ``SIL`` for pauses, ``SPN`` for a sound
with no ARPAbet mapping) and start/end in samples at 16 kHz. s3prl does not read them; the
demo's phone teachers train on them frame by frame.
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Sequence, Tuple

from s3prl_ekd.corpus.phones import PhoneMapError, ipa_to_arpabet
from s3prl_ekd.io import SAMPLE_RATE
from s3prl_ekd.io.atomic import atomic_write_text

Segment = Tuple[str, int, int]  # phone, start, end (samples at 16 kHz)
ALIGNMENT_DIR = "alignments"


def phone_segments(events: Sequence[Tuple[str, int]], native_rate: int, n: int,
                   rate: int = SAMPLE_RATE) -> List[Segment]:
    """eSpeak phoneme events ``(ipa, start sample at native_rate)`` -> ARPAbet segments of the
    ``n`` samples of the audio resampled to ``rate``.

    Each event lasts until the next one (the last until sample ``n``); an event naming several
    ARPAbet phones ("ɛɹ") is split evenly between them; the audio before the first event and
    every pause event are ``SIL``.
    """
    scale = rate / native_rate
    starts = [min(n, round(s * scale)) for _, s in events] + [n]
    segments: List[Segment] = []
    if events and starts[0] > 0:
        segments.append(("SIL", 0, starts[0]))
    for (ipa, _), a, b in zip(events, starts[:-1], starts[1:]):
        if b <= a:
            continue
        try:
            phones = ipa_to_arpabet(ipa) if ipa.strip() else ["SIL"]
        except PhoneMapError:
            phones = ["SPN"]
        phones = phones or ["SIL"]
        edges = [a + (b - a) * k // len(phones) for k in range(len(phones) + 1)]
        for phone, x, y in zip(phones, edges[:-1], edges[1:]):
            if y > x:
                segments.append((phone, x, y))
    # neighbouring pauses as one
    merged: List[Segment] = []
    for seg in segments:
        if merged and merged[-1][0] == seg[0] == "SIL":
            merged[-1] = ("SIL", merged[-1][1], seg[2])
        else:
            merged.append(seg)
    return merged


def format_line(uid: str, segments: Sequence[Segment]) -> str:
    return " ".join([uid] + [f"{p}:{a}:{b}" for p, a, b in segments])


def write_alignments(root: str, by_split: Dict[str, List[Tuple[str, List[Segment]]]]) -> None:
    """``alignments/<split>.txt`` under ``root``, utterances sorted by id."""
    for split, items in by_split.items():
        text = "".join(format_line(uid, segs) + "\n" for uid, segs in sorted(items))
        atomic_write_text(os.path.join(root, ALIGNMENT_DIR, f"{split}.txt"), text)


def read_alignments(path: str) -> Dict[str, List[Segment]]:
    """{utterance id: segments} of one ``alignments/<split>.txt``; errors name the file and line."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"alignment file {path} is missing: remake the corpus "
                                "(s3prl-ekd make-corpus) with this version of s3prl-ekd")
    out: Dict[str, List[Segment]] = {}
    with open(path, encoding="utf-8") as f:
        for k, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            try:
                segs = [(p, int(a), int(b)) for p, a, b in (x.split(":") for x in parts[1:])]
            except ValueError as e:
                raise ValueError(f"{path}:{k}: expected 'UID PHONE:start:end ...' ({e})") from None
            out[parts[0]] = segs
    return out


def frame_labels(segments: Sequence[Tuple[Any, int, int]], frames: int, hop: int = 320,
                 default: Any = "SIL") -> List[Any]:
    """The label of the segment holding each frame's centre (``t * hop + hop // 2``) for
    ``frames`` frames of ``hop`` samples; ``default`` where no segment does."""
    labels, k = [], 0
    for t in range(frames):
        centre = t * hop + hop // 2
        while k < len(segments) and segments[k][2] <= centre:
            k += 1
        labels.append(segments[k][0] if k < len(segments) and segments[k][1] <= centre else default)
    return labels
