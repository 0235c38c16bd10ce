"""Sentences from the shipped word list, and the lexicon made from eSpeak NG's phonemes."""

from __future__ import annotations

import os
import random
from typing import Dict, List

from s3prl_ekd.corpus.phones import ipa_to_arpabet

WORDS_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "words.txt")


def load_words(path: str = WORDS_FILE) -> List[str]:
    """The word list: one lower-case word a line, ``#`` comments skipped."""
    with open(path, encoding="utf-8") as f:
        words = [w.strip() for w in f if w.strip() and not w.startswith("#")]
    bad = [w for w in words if not all(c.isalpha() or c == "'" for c in w)]
    if bad:
        raise ValueError(f"{path}: words must be letters or apostrophes only, got {bad[:5]}")
    return words


def make_sentence(words: List[str], rng: random.Random, min_words: int, max_words: int) -> str:
    """A random sentence of ``min_words`` to ``max_words`` words, lower case, no punctuation."""
    return " ".join(rng.choice(words) for _ in range(rng.randint(min_words, max_words)))


def make_lexicon(words: List[str], accent: str = "en-us") -> Dict[str, List[str]]:
    """UPPER-CASE word -> ARPAbet phones, from eSpeak NG's IPA of each word alone."""
    from s3prl_ekd.corpus.espeak import get_espeak

    espeak = get_espeak(0)
    espeak.set_voice(accent)
    return {w.upper(): ipa_to_arpabet(espeak.phonemes(w)) for w in words}
