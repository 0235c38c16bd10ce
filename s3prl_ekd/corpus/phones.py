"""eSpeak NG's IPA (en-us) mapped to the ARPAbet phone set of LibriSpeech's lexicon.

The phone set is the one s3prl's libriphone task uses (``SIL``, ``SPN`` and the 39 ARPAbet phones,
vowels carrying a stress digit 0/1/2), so a lexicon made here reads like LibriSpeech's g2p lexicon.
"""

from __future__ import annotations

from typing import Dict, List

# Longest IPA match first. eSpeak writes length with "ː" and r-colouring as a separate "ɹ".
VOWELS: Dict[str, str] = {
    "aɪ": "AY", "aʊ": "AW", "eɪ": "EY", "oʊ": "OW", "ɔɪ": "OY",
    "iː": "IY", "i": "IY", "uː": "UW", "u": "UW",
    "ɑː": "AA", "ɑ": "AA", "a": "AA", "ɔː": "AO", "ɔ": "AO", "oː": "AO", "o": "OW",
    "ɜː": "ER", "ɜ": "ER", "ɚ": "ER",
    "æ": "AE", "ɛ": "EH", "e": "EH", "ɪ": "IH", "ᵻ": "IH", "ʊ": "UH",
    "ʌ": "AH", "ə": "AH", "ɐ": "AH",
    # other accents' vowels (British, Scottish, Caribbean), heard in the synthesised speech
    "ɒ": "AA", "ʌʉ": "OW", "ʉ": "UW",
}
CONSONANTS: Dict[str, str] = {
    "tʃ": "CH", "dʒ": "JH",
    "p": "P", "b": "B", "t": "T", "d": "D", "k": "K", "ɡ": "G", "g": "G",
    "f": "F", "v": "V", "θ": "TH", "ð": "DH", "s": "S", "z": "Z", "ʃ": "SH", "ʒ": "ZH",
    "h": "HH", "m": "M", "n": "N", "ŋ": "NG", "l": "L", "ɹ": "R", "r": "R", "w": "W", "j": "Y",
    # allophones LibriSpeech's lexicon writes as their phonemes
    "ɾ": "T", "ʔ": "T", "x": "K", "ʍ": "W",
}
STRESS = {"ˈ": "1", "ˌ": "2"}
# length/syllabic/dental/palatal marks left after matching, word and clause breaks
IGNORED = set("ː:̩̪ʲ -_'")

BASE_PHONES = sorted(set(VOWELS.values())) + sorted(set(CONSONANTS.values()))


def phone_set() -> List[str]:
    """The fixed token list (s3prl's libriphone vocabulary order): SIL, SPN, ARPAbet with stress."""
    vowels = sorted(set(VOWELS.values()))
    tokens = [v + s for v in vowels for s in "012"] + sorted(set(CONSONANTS.values()))
    return ["SIL", "SPN"] + sorted(tokens)


class PhoneMapError(ValueError):
    """An IPA symbol has no ARPAbet mapping."""


def ipa_to_arpabet(ipa: str) -> List[str]:
    """ARPAbet phones (stressed vowels) of one word's IPA from eSpeak NG."""
    table = {**VOWELS, **CONSONANTS}
    longest = max(len(k) for k in table)
    phones: List[str] = []
    stress = "0"
    i = 0
    while i < len(ipa):
        ch = ipa[i]
        if ch in STRESS:
            stress = STRESS[ch]
            i += 1
            continue
        for n in range(longest, 0, -1):
            sym = ipa[i : i + n]
            if sym in table:
                break
        else:
            if ch in IGNORED:
                i += 1
                continue
            raise PhoneMapError(f"IPA symbol {ch!r} in {ipa!r} has no ARPAbet mapping (phones.py)")
        i += len(sym)
        if sym in VOWELS:
            phones.append(VOWELS[sym] + stress)
            stress = "0"
        else:
            phone = CONSONANTS[sym]
            if not (phones and phones[-1] == phone):  # "ɹɹ" across a syllable break is one R
                phones.append(phone)
    return phones
