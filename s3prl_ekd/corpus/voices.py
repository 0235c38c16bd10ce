"""Speakers (eSpeak NG accents, voice variants and pitch) and emotions (prosody classes)."""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from typing import Dict, List

# English accents eSpeak NG speaks ("en-shaw" is a script, not an accent; "en-gb" is no voice).
ACCENTS = ["en-us", "en-us-nyc", "en", "en-gb-x-rp", "en-gb-scotland", "en-gb-x-gbclan",
           "en-gb-x-gbcwmd", "en-029"]
# Voice variants (voices/!v) with a natural voice: the whispering, robotic and croaking ones are
# left out because they carry no pitch, which emotions are made of.
LOW_VARIANTS = ["m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "Andy", "Mike", "adam", "david",
                "ed", "edward", "ian", "john", "max", "paul", "rob", "robert", "travis", "victor",
                "zac", "benjamin", "caleb", "Michael", "Hugo", "Lee", "norbert", "quincy"]
HIGH_VARIANTS = ["f1", "f2", "f3", "f4", "f5", "Annie", "Alicia", "Andrea", "anika", "aunty",
                 "belinda", "grandma", "linda", "shelby", "steph"]


@dataclass(frozen=True)
class Speaker:
    """One voice: accent, variant, and the speaker's own base pitch, pitch range and rate."""

    accent: str
    variant: str
    pitch: int  # eSpeak base pitch, 0-100 (50 = the variant's default)
    range: int  # eSpeak pitch range, 0-100
    rate: int  # words per minute (eSpeak default 175)

    def to_dict(self) -> Dict:
        return asdict(self)


@dataclass(frozen=True)
class Emotion:
    """A prosody class: offsets from the speaker's pitch, range and rate, and a volume."""

    pitch: int
    range: int
    rate: int
    volume: int  # 100 = normal; above ~160 clips
    wordgap: int = 0  # extra pause between words, 10 ms units


# IEMOCAP's four SUPERB classes as prosody, each offset larger than the spread between speakers
# so the class survives a change of voice: sad is low, flat, slow and halting; happy high and
# lively; angry fast, wide-ranged and loud (clipping); neutral is the speaker's own voice.
EMOTIONS: Dict[str, Emotion] = {
    "neu": Emotion(pitch=0, range=0, rate=0, volume=100),
    "hap": Emotion(pitch=30, range=40, rate=15, volume=115),
    "ang": Emotion(pitch=5, range=45, rate=70, volume=170),
    "sad": Emotion(pitch=-25, range=-45, rate=-60, volume=70, wordgap=12),
}


def make_speakers(n: int, rng: random.Random, high: bool = None) -> List[Speaker]:
    """``n`` distinct voices; ``high=True/False`` picks high/low-pitched variants, None mixes them."""
    if high is None:
        pool = [(v, False) for v in LOW_VARIANTS] + [(v, True) for v in HIGH_VARIANTS]
    else:
        pool = [(v, high) for v in (HIGH_VARIANTS if high else LOW_VARIANTS)]
    order = list(pool)
    rng.shuffle(order)
    speakers = []
    for i in range(n):
        variant, _ = order[i % len(order)]
        # past the pool size, voices differ by accent and pitch only
        speakers.append(Speaker(
            accent=ACCENTS[rng.randrange(len(ACCENTS))],
            variant=variant,
            pitch=rng.randint(30, 70),
            range=rng.randint(40, 70),
            rate=rng.randint(150, 190),
        ))
    return speakers


def utterance_prosody(speaker: Speaker, emotion: str, rng: random.Random) -> Dict[str, int]:
    """eSpeak parameters of one utterance: speaker + emotion + a little per-utterance jitter."""
    emo = EMOTIONS[emotion]
    clip = lambda v, lo, hi: max(lo, min(hi, v))  # noqa: E731
    return {
        "pitch": clip(speaker.pitch + emo.pitch + rng.randint(-4, 4), 0, 100),
        "range": clip(speaker.range + emo.range + rng.randint(-5, 5), 0, 100),
        "rate": clip(speaker.rate + emo.rate + rng.randint(-8, 8), 80, 400),
        "volume": clip(emo.volume + rng.randint(-5, 5), 10, 200),
        "wordgap": emo.wordgap,
    }
