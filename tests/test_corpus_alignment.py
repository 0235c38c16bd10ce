"""Phone alignments from eSpeak NG's phoneme events, and the emotion prosody of the IEMOCAP layout."""

import json
import os
from collections import defaultdict

import numpy as np
import pytest
import soundfile as sf
import torch

from s3prl_ekd.corpus.alignment import frame_labels, phone_segments, read_alignments
from s3prl_ekd.corpus.phones import phone_set
from s3prl_ekd.corpus.plan import SIZES, iemocap_plan
from s3prl_ekd.corpus.text import load_words
from s3prl_ekd.corpus.voices import EMOTIONS


def test_phone_segments_by_hand():
    # 22050 Hz events -> 16 kHz spans: 441 native samples = 320 at 16 kHz
    events = [("h", 441), ("ˈɛɹ", 882), ("", 2205), ("ɒ", 2646)]
    segs = phone_segments(events, native_rate=22050, n=2240)  # 3087 samples at 22050 Hz
    assert segs == [("SIL", 0, 320), ("HH", 320, 640),
                    # "ɛɹ" is two phones: its span 640..1600 halved
                    ("EH1", 640, 1120), ("R", 1120, 1600),
                    ("SIL", 1600, 1920), ("AA0", 1920, 2240)]


def test_frame_labels_take_the_phone_at_each_frame_centre():
    segs = [("SIL", 0, 200), ("S", 200, 1000), ("IY1", 1000, 1300)]
    # centres at 160, 480, 800, 1120, 1440
    assert frame_labels(segs, 5) == ["SIL", "S", "S", "IY1", "SIL"]
    assert frame_labels([(7, 0, 700)], 3, default=0) == [7, 7, 0]


def test_alignments_cover_every_librispeech_utterance_and_match_the_audio(tiny_corpus):
    vocab = set(phone_set())
    silent, voiced = [], []
    for split in ("train-clean-100", "dev-clean", "test-clean"):
        aligned = read_alignments(os.path.join(tiny_corpus.alignments, f"{split}.txt"))
        flacs = {f[:-5]: os.path.join(d, f) for d, _, fs in os.walk(os.path.join(tiny_corpus.librispeech, split))
                 for f in fs if f.endswith(".flac")}
        assert set(aligned) == set(flacs)
        for uid, segs in aligned.items():
            wav, rate = sf.read(flacs[uid], dtype="float32")
            # contiguous from the first sample to the last
            assert segs[0][1] == 0 and segs[-1][2] == len(wav)
            assert all(a[2] == b[1] and a[1] < a[2] for a, b in zip(segs, segs[1:]))
            assert all(p in vocab for p, _, _ in segs)
            assert sum(p not in ("SIL", "SPN") for p, _, _ in segs) >= 3
            for p, a, b in segs:
                energy = float(np.mean(wav[a:b] ** 2))
                (silent if p == "SIL" else voiced).append(energy)
    # the spans are where the sounds are: pauses are far quieter than phones
    assert np.median(silent) < 0.05 * np.median(voiced)


def test_read_alignments_names_the_file_and_line(tmp_path):
    bad = tmp_path / "train.txt"
    bad.write_text("a-1-0000 S:0:10\nb-1-0000 S:0\n")
    with pytest.raises(ValueError, match=r"train.txt:2"):
        read_alignments(str(bad))
    with pytest.raises(FileNotFoundError, match="remake the corpus"):
        read_alignments(str(tmp_path / "missing.txt"))


def test_emotion_classes_outweigh_the_actors_own_voices():
    plan = iemocap_plan(SIZES["demo"], 0, load_words())
    by_actor = defaultdict(lambda: defaultdict(list))
    for u in plan:
        actor = (u.meta["session"], u.meta["name"].rsplit("_", 1)[1][0])  # session, F/M
        by_actor[actor][u.meta["label"]].append(u.prosody)
    mean = lambda rows, key: sum(r[key] for r in rows) / len(rows)  # noqa: E731
    for actor, emos in by_actor.items():
        assert mean(emos["sad"], "rate") < mean(emos["neu"], "rate") < mean(emos["hap"], "rate") < mean(emos["ang"], "rate")
        assert mean(emos["sad"], "pitch") < mean(emos["neu"], "pitch") < mean(emos["hap"], "pitch")
        assert mean(emos["sad"], "range") < mean(emos["neu"], "range") < mean(emos["ang"], "range")
        assert all(r["wordgap"] == EMOTIONS["sad"].wordgap > 0 for r in emos["sad"])
    # angry and sad move the rate further than the actors' own (neutral) rates differ
    base = [mean(emos["neu"], "rate") for emos in by_actor.values()]
    assert min(EMOTIONS["ang"].rate, -EMOTIONS["sad"].rate) > max(base) - min(base)


def test_sad_speech_is_slower_than_angry_speech_in_the_audio(tiny_corpus):
    durations = defaultdict(list)
    for s in range(1, 6):
        with open(os.path.join(tiny_corpus.iemocap_meta_data, f"Session{s}", "test_meta_data.json")) as f:
            meta = json.load(f)["meta_data"]
        for m in meta:
            info = sf.info(os.path.join(tiny_corpus.iemocap, m["path"]))
            durations[m["label"]].append(info.duration)
    med = {e: float(np.median(v)) for e, v in durations.items()}
    assert med["sad"] > med["neu"] > med["ang"], med


def test_phone_teacher_data_carries_the_alignment(tiny_corpus):
    from s3prl_ekd.demo.teacher_data import librispeech_phones
    from s3prl_ekd.demo.teacher_training import aligned_frames

    utts, phones = librispeech_phones(tiny_corpus.root)
    assert all(u.segments for u in utts)
    for u in utts:
        frames = len(u.wav) // 320
        labels = aligned_frames(u.segments, frames)
        assert labels.shape == (frames,) and int(labels.max()) <= len(phones)
        # the frame labels, run-length collapsed and without silence, are the utterance's spans
        spoken = [p for p, a, b in u.segments if p != 0 and (b - a) >= 320]
        collapsed = [int(x) for i, x in enumerate(labels) if x != 0 and (i == 0 or x != labels[i - 1])]
        assert set(spoken) <= set(collapsed)
    assert isinstance(labels, torch.Tensor)
