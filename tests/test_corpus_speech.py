"""eSpeak NG through ctypes, the IPA -> ARPAbet map and the voice tables."""

import numpy as np
import pytest

from s3prl_ekd.corpus.espeak import EspeakError, get_espeak, variant_exists
from s3prl_ekd.corpus.phones import PhoneMapError, ipa_to_arpabet, phone_set
from s3prl_ekd.corpus.voices import HIGH_VARIANTS, LOW_VARIANTS


def test_ipa_to_arpabet_by_hand():
    assert ipa_to_arpabet("bˈɛɾɚ") == ["B", "EH1", "T", "ER0"]
    assert ipa_to_arpabet("dˈʊɹɹɪŋ") == ["D", "UH1", "R", "IH0", "NG"]  # one R across the break
    assert ipa_to_arpabet("kwˈɛstʃən") == ["K", "W", "EH1", "S", "CH", "AH0", "N"]
    assert ipa_to_arpabet("aɪdˈiə") == ["AY0", "D", "IY1", "AH0"]
    with pytest.raises(PhoneMapError, match="'ʀ'"):
        ipa_to_arpabet("ʀa")


def test_phone_set_is_libriphone_order():
    phones = phone_set()
    assert len(phones) == 71 and phones[:4] == ["SIL", "SPN", "AA0", "AA1"] and phones[-1] == "ZH"


def test_speech_and_phonemes():
    espeak = get_espeak(0)
    espeak.set_voice("en-us", "m3")
    assert espeak.phonemes("the quick brown fox") == "ðə kwˈɪk bɹˈaʊn fˈɑːks"
    wav = espeak.synth("hello world")
    assert wav.dtype == np.int16 and espeak.sample_rate == 22050
    assert 0.5 < wav.size / 22050 < 3 and np.abs(wav).max() > 1000
    with pytest.raises(EspeakError, match="unknown eSpeak NG voice 'xx-nowhere'"):
        espeak.set_voice("xx-nowhere")


def test_every_voice_variant_exists():
    # the library silently ignores an unknown variant: check them against its data folder
    missing = [v for v in LOW_VARIANTS + HIGH_VARIANTS if not variant_exists(v)]
    assert not missing
