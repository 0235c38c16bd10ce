"""libespeak-ng (from the ``espeakng-loader`` wheel) through ctypes: speech and phonemes.

eSpeak NG is GPL-3.0-or-later. One library state per process: the library is not thread-safe
(two threads synthesising at once crash), so parallel synthesis uses processes, each with its own
:class:`Espeak`.
"""

from __future__ import annotations

import ctypes
import threading
from typing import List, Optional, Tuple

import numpy as np

AUDIO_OUTPUT_SYNCHRONOUS = 2  # espeak_Synth returns when the utterance is done
CHARS_UTF8 = 1
ENDPAUSE = 0x1000  # ~0.3 s of trailing silence, like the end of a sentence
PHONEMES_IPA = 0x02
# espeak_Initialize options: phoneme events in the synthesis callback, named in IPA (the audio
# is the same with or without them)
INIT_PHONEME_EVENTS = 0x0001 | 0x0002
EVENT_LIST_TERMINATED = 0
EVENT_PHONEME = 7
PARAMS = {"rate": 1, "volume": 2, "pitch": 3, "range": 4, "wordgap": 7}



class _Event(ctypes.Structure):
    """``espeak_EVENT`` of speak_lib.h (the ``id`` union read as its ``char string[8]`` member)."""

    _fields_ = [
        ("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int), ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p), ("id", ctypes.c_char * 8),
    ]


_SYNTH_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event)
)
_LOCK = threading.Lock()
_INSTANCE: Optional["Espeak"] = None


class EspeakError(RuntimeError):
    """The speech library could not be loaded or rejected a voice or a text."""


class Espeak:
    """The process's eSpeak NG state: pick a voice and prosody, synthesise, phonemise."""

    def __init__(self, seed: int = 0) -> None:
        try:
            import espeakng_loader
        except ImportError as e:  # pragma: no cover - it is an install requirement
            raise EspeakError(
                "the `espeakng-loader` package is missing: pip install espeakng-loader"
            ) from e
        self.lib = ctypes.CDLL(espeakng_loader.get_library_path())
        self._declare()
        # Always pass the data path: the library's built-in one is the wheel builder's folder, and
        # without a valid path it ends the whole process.
        data = espeakng_loader.get_data_path().encode()
        rate = self.lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, data, INIT_PHONEME_EVENTS)
        if rate <= 0:
            raise EspeakError(f"espeak_Initialize failed (data path {data.decode()!r})")
        self.sample_rate = int(rate)
        self._chunks: List[np.ndarray] = []
        # (IPA phoneme, start sample at `sample_rate`) of the last `synth`; "" marks a pause
        self.last_phonemes: List[Tuple[str, int]] = []
        self._callback = _SYNTH_CALLBACK(self._on_audio)  # referenced for the object's life
        self.lib.espeak_SetSynthCallback(self._callback)
        self.voices = self._list_voice_names()
        self.seed(seed)

    def _declare(self) -> None:
        lib = self.lib
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_SYNTH_CALLBACK]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
            ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
        ]
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_TextToPhonemes.argtypes = [
            ctypes.POINTER(ctypes.c_void_p), ctypes.c_int, ctypes.c_int
        ]
        lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
        lib.espeak_ListVoices.argtypes = [ctypes.c_void_p]
        lib.espeak_ListVoices.restype = ctypes.POINTER(ctypes.c_void_p)
        lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        lib.espeak_ng_SetRandSeed.restype = None

    def _list_voice_names(self) -> set:
        # espeak_VOICE starts with `const char *name; const char *languages; const char *identifier`
        names = set()
        voices = self.lib.espeak_ListVoices(None)
        i = 0
        while voices[i]:
            fields = ctypes.cast(voices[i], ctypes.POINTER(ctypes.c_char_p))
            # SetVoiceByName matches the identifier's last part, case-insensitively ("en-us")
            names.add(fields[2].decode().rsplit("/", 1)[-1].lower())
            i += 1
        return names

    def seed(self, seed: int) -> None:
        """Fix the library's random state (breath noise, jitter) so the output is reproducible."""
        self.lib.espeak_ng_SetRandSeed(int(seed))

    def set_voice(self, language: str, variant: Optional[str] = None) -> None:
        """Select ``language`` (e.g. ``en-us``) with an optional variant (``m3``, ``f2``, ``Annie``)."""
        if language.lower() not in self.voices:
            raise EspeakError(f"unknown eSpeak NG voice {language!r}")
        name = language if variant is None else f"{language}+{variant}"
        # An unknown variant is silently ignored by the library: the caller checks variants
        # against the data folder (see `variant_exists`).
        if self.lib.espeak_SetVoiceByName(name.encode()) != 0:
            raise EspeakError(f"eSpeak NG rejected voice {name!r}")

    def set_prosody(self, rate: int, pitch: int, range_: int, volume: int, wordgap: int = 0) -> None:
        """Words per minute, base pitch 0-100, pitch range 0-100, volume 0-200 (100 = normal),
        extra pause between words in units of 10 ms."""
        for key, value in (("rate", rate), ("pitch", pitch), ("range", range_), ("volume", volume),
                           ("wordgap", wordgap)):
            if self.lib.espeak_SetParameter(PARAMS[key], int(value), 0) != 0:
                raise EspeakError(f"eSpeak NG rejected {key}={value}")

    def _on_audio(self, wav, n, events) -> int:
        if n > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        i = 0
        while events and events[i].type != EVENT_LIST_TERMINATED:
            if events[i].type == EVENT_PHONEME:
                name = events[i].id.decode("utf-8", errors="replace")
                self.last_phonemes.append((name, int(events[i].sample)))
            i += 1
        return 0

    def synth(self, text: str) -> np.ndarray:
        """Speak ``text`` with the current voice: int16 samples at ``self.sample_rate``."""
        data = text.encode("utf-8") + b"\0"
        self._chunks, self.last_phonemes = [], []
        rc = self.lib.espeak_Synth(data, len(data), 0, 0, 0, CHARS_UTF8 | ENDPAUSE, None, None)
        if rc != 0:
            raise EspeakError(f"espeak_Synth failed (code {rc}) on {text!r}")
        chunks, self._chunks = self._chunks, []
        return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)

    def phonemes(self, text: str) -> str:
        """IPA phonemes of ``text`` with the current voice (clauses joined by spaces)."""
        buf = ctypes.create_string_buffer(text.encode("utf-8"))
        ptr = ctypes.c_void_p(ctypes.addressof(buf))
        out = []
        while ptr.value:
            res = self.lib.espeak_TextToPhonemes(ctypes.byref(ptr), CHARS_UTF8, PHONEMES_IPA)
            if res:
                out.append(res.decode("utf-8"))
        return " ".join(s.strip() for s in out if s.strip())


def variant_exists(variant: str) -> bool:
    """Whether ``voices/!v/<variant>`` is in the wheel's data (the library ignores unknown ones)."""
    import os

    import espeakng_loader

    return os.path.isfile(os.path.join(espeakng_loader.get_data_path(), "voices", "!v", variant))


def get_espeak(seed: int = 0) -> Espeak:
    """The process's single :class:`Espeak` (created on first use), reseeded with ``seed``."""
    global _INSTANCE
    with _LOCK:
        if _INSTANCE is None:
            _INSTANCE = Espeak(seed)
        else:
            _INSTANCE.seed(seed)
        return _INSTANCE
