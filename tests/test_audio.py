import logging
import random

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio

from s3prl_ekd.io.audio import (
    AudioError,
    AudioSpec,
    AudioStats,
    check_waveforms,
    load_audio,
    missing_files,
)


def _tone(n, sr=16000, freq=440.0):
    t = np.arange(n) / sr
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype("float32")


def _write(path, data, sr=16000, subtype=None):
    sf.write(str(path), data, sr, subtype=subtype)
    return str(path)


def test_clean_file_is_read_exactly(tmp_path):
    x = _tone(16000)
    p = _write(tmp_path / "a.wav", x, subtype="FLOAT")
    wav = load_audio(p)
    assert wav.dtype == torch.float32 and wav.shape == (16000,)
    assert torch.equal(wav, torch.from_numpy(x))


@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda p: p.write_bytes(b""), "empty"),
        (lambda p: p.write_bytes(b"RIFF\x00\x00 not audio at all" * 10), "unreadable"),
        (lambda p: _write(p, np.zeros(0, dtype="float32")), "empty"),  # a header and no samples
        (lambda p: _write(p, _tone(399)), "too_short"),  # one sample short of a frame
    ],
    ids=["zero-bytes", "garbage", "zero-frames", "sub-frame"],
)
def test_files_that_cannot_be_used_raise_audio_error(tmp_path, make, reason):
    p = tmp_path / "bad.wav"
    make(p)
    with pytest.raises(AudioError) as e:
        load_audio(p)
    assert e.value.reason == reason
    assert str(p) in str(e.value)


def test_truncated_files(tmp_path):
    # FLAC cut in half: libsndfile loses sync -> skipped as damaged
    flac = _write(tmp_path / "a.flac", _tone(32000))
    data = open(flac, "rb").read()
    cut = tmp_path / "cut.flac"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(AudioError, match="damaged or truncated") as e:
        load_audio(cut)
    assert e.value.reason == "unreadable"
    # WAV cut in half: the complete samples before the cut are what libsndfile returns; they are used
    wav = _write(tmp_path / "a.wav", _tone(16000), subtype="FLOAT")
    data = open(wav, "rb").read()
    cut = tmp_path / "cut.wav"
    header = len(data) - 4 * 16000
    cut.write_bytes(data[: header + 4 * 5000 + 2])  # header + 5000 whole float samples + half of one
    got = load_audio(cut)
    assert torch.equal(got, torch.from_numpy(_tone(16000)[:5000]))


def test_missing_file_and_length_table_check(tmp_path):
    with pytest.raises(AudioError, match="does not exist") as e:
        load_audio(tmp_path / "gone.wav")
    assert e.value.reason == "missing"
    _write(tmp_path / "here.wav", _tone(800))
    assert missing_files(["here.wav", "gone.wav"], root=str(tmp_path)) == ["gone.wav"]


def test_nan_and_inf_samples_are_refused(tmp_path):
    x = _tone(4000)
    x[100] = np.nan
    x[200] = np.inf
    p = _write(tmp_path / "nan.wav", x, subtype="FLOAT")
    with pytest.raises(AudioError, match="2 NaN/inf samples") as e:
        load_audio(p)
    assert e.value.reason == "non_finite"


def test_stereo_is_averaged_to_mono(tmp_path):
    left, right = _tone(8000, freq=300), _tone(8000, freq=500)
    p = _write(tmp_path / "st.wav", np.stack([left, right], 1), subtype="FLOAT")
    stats = AudioStats()
    wav = load_audio(p, stats=stats)
    torch.testing.assert_close(wav, torch.from_numpy((left + right) / 2))
    assert stats.counts["downmixed"] == 1


@pytest.mark.parametrize("sr", [8000, 44100])
def test_other_sample_rates_are_resampled(tmp_path, sr):
    x = _tone(sr, sr=sr)  # one second
    p = _write(tmp_path / f"{sr}.wav", x, sr=sr, subtype="FLOAT")
    stats = AudioStats()
    wav = load_audio(p, stats=stats)
    expected = torchaudio.functional.resample(torch.from_numpy(x), sr, 16000)
    assert wav.shape == (16000,)
    torch.testing.assert_close(wav, expected)
    assert stats.counts["resampled"] == 1


def test_long_file_is_cropped_while_read(tmp_path, monkeypatch):
    x = _tone(50000)
    p = _write(tmp_path / "long.wav", x, subtype="FLOAT")
    read = []
    real_read = sf.read
    monkeypatch.setattr(sf, "read", lambda *a, **k: read.append(k) or real_read(*a, **k))
    spec = AudioSpec(max_samples=12000)
    stats = AudioStats()
    assert torch.equal(load_audio(p, spec, stats=stats), torch.from_numpy(x[:12000]))
    rng = random.Random(3)
    start = random.Random(3).randint(0, 50000 - 12000)
    assert torch.equal(load_audio(p, spec, rng=rng), torch.from_numpy(x[start : start + 12000]))
    # only the window was read from disk, never the whole file
    assert all(k["stop"] - k["start"] == 12000 for k in read)
    assert stats.counts["cropped"] == 1
    # a 44.1 kHz file: the window read covers max_samples after resampling, exactly cropped
    p44 = _write(tmp_path / "long44.wav", _tone(44100 * 3, sr=44100), sr=44100)
    assert load_audio(p44, spec).shape == (12000,)


def test_spec_rejects_impossible_limits():
    with pytest.raises(ValueError, match="max_samples .* below min_samples"):
        AudioSpec(max_samples=100)


def test_stats_log_names_file_and_counts(tmp_path, caplog):
    stats = AudioStats(max_logged=2)
    with caplog.at_level(logging.WARNING, logger="s3prl_ekd.io.audio"):
        for i in range(4):
            try:
                load_audio(tmp_path / f"gone{i}.wav")
            except AudioError as e:
                stats.skip(e)
    assert stats.skipped == 4 and stats.counts["skipped/missing"] == 4
    text = caplog.text
    assert "gone0.wav" in text and "1 file(s) skipped so far" in text and "2 file(s) skipped so far" in text
    assert "gone3.wav" not in text and "no longer logged" in text
    assert stats.scalars() == {"audio/skipped": 4, "audio/skipped/missing": 4}
    assert "skipped: 4" in stats.summary()


def test_check_waveforms_pads_sub_frame_and_refuses_nan(caplog):
    good, short, empty = torch.randn(1000), torch.randn(100), torch.zeros(0)
    with caplog.at_level(logging.WARNING, logger="s3prl_ekd.io.audio"):
        out = check_waveforms([good, short, empty], 400)
    assert out[0] is good
    assert out[1].shape == (400,) and torch.equal(out[1][:100], short) and not out[1][100:].any()
    assert out[2].shape == (400,) and not out[2].any()
    assert "1 (100 samples), 2 (0 samples)" in caplog.text and "zero-padded" in caplog.text

    bad = torch.randn(1000)
    bad[5] = float("inf")
    with pytest.raises(ValueError, match=r"waveform 1 of the batch holds 1 NaN/inf"):
        check_waveforms([good, bad])
    with pytest.raises(ValueError, match=r"waveform 0 of the batch has shape \(2, 1000\).*mono"):
        check_waveforms([torch.randn(2, 1000)])


def test_upstream_forward_pads_sub_frame_and_names_nan_index(tmp_path, tiny_student_config):
    from s3prl_ekd.distill.student import EKDStudent
    from s3prl_ekd.distill.student_checkpoint import save_student
    from s3prl_ekd.distill.targets import TargetPlan
    from s3prl_ekd.upstream.ekd_student.expert import UpstreamExpert

    student = EKDStudent(tiny_student_config, TargetPlan.from_scheme("average", {"a": 32}))
    up = UpstreamExpert(str(save_student(student, tmp_path / "s.ckpt"))).eval()
    long, short = torch.randn(1600), torch.randn(50)
    with torch.no_grad():
        out = up([long, short])
        ref = up([long, torch.nn.functional.pad(short, (0, 350))])
    # the 50-sample waveform became one frame of features: those of its zero-padded self
    assert out["hidden_states"][0].shape[:2] == (2, 4)
    for a, b in zip(out["hidden_states"], ref["hidden_states"]):
        assert torch.isfinite(a).all()
        torch.testing.assert_close(a, b)
    bad = torch.randn(1600)
    bad[0] = float("nan")
    with pytest.raises(ValueError, match="waveform 1 of the batch holds 1 NaN/inf"):
        up([torch.randn(1600), bad])


def _set_wav_rate(path, rate):
    """Overwrite the sample-rate field of a canonical WAV header (bytes 24..27), as a damaged file would."""
    import struct

    data = bytearray(open(path, "rb").read())
    assert data[12:16] == b"fmt "
    data[24:28] = struct.pack("<I", rate)
    open(path, "wb").write(bytes(data))


@pytest.mark.parametrize("rate", [2**31 - 1, 4_000_000, 5])
def test_absurd_sample_rate_is_skipped_and_counted(tmp_path, rate):
    p = _write(tmp_path / "odd.wav", _tone(16000), subtype="PCM_16")
    _set_wav_rate(p, rate)
    with pytest.raises(AudioError, match=rf"odd\.wav: claims a sample rate of {rate} Hz, outside 1000\.\.768000") as e:
        load_audio(p)
    stats = AudioStats()
    stats.skip(e.value)
    assert stats.counts["skipped/bad_rate"] == 1


def test_rate_just_off_a_common_one_resamples_with_bounded_memory(tmp_path, monkeypatch):
    """16001 Hz: torchaudio's filter bank would be 16000 x 16001 taps; libsoxr streams instead."""
    import s3prl_ekd.io.audio as audio

    def refuse(*args, **kwargs):
        raise AssertionError("torchaudio's polyphase filter bank for a 16001 Hz file")

    monkeypatch.setattr(audio.torchaudio.functional, "resample", refuse)
    sr = 16001
    p = _write(tmp_path / "off.wav", _tone(sr, sr=sr), sr=sr, subtype="FLOAT")
    wav = load_audio(p)
    assert wav.shape == (16000,) and wav.dtype == torch.float32
    # the same 440 Hz tone at 16 kHz; away from the edges the resampler's error is far below
    # 1e-3 of full scale (libsoxr HQ: ~1e-5 here), while a wrong rate would be off by ~0.3
    want = torch.from_numpy(_tone(16000))
    assert (wav[400:-400] - want[400:-400]).abs().max() < 1e-3


def test_samples_that_overflow_when_downmixed_are_non_finite_skips(tmp_path):
    big = np.full((16000, 2), 3e38, dtype=np.float32)  # finite, but their sum is not
    p = _write(tmp_path / "loud.wav", big, subtype="FLOAT")
    with pytest.raises(AudioError, match=r"loud\.wav: holds \d+ NaN/inf samples after averaging its channels") as e:
        load_audio(p)
    assert e.value.reason == "non_finite"


def test_upstream_forward_names_the_index_of_huge_amplitude_input(tmp_path, tiny_student_config):
    from s3prl_ekd.distill.student import EKDStudent
    from s3prl_ekd.distill.student_checkpoint import save_student
    from s3prl_ekd.distill.targets import TargetPlan
    from s3prl_ekd.upstream.ekd_student.expert import UpstreamExpert

    student = EKDStudent(tiny_student_config, TargetPlan.from_scheme("average", {"a": 32}))
    up = UpstreamExpert(str(save_student(student, tmp_path / "s.ckpt"))).eval()
    huge = torch.randn(1600) * 1e37  # finite samples; the features overflow
    with torch.no_grad(), pytest.raises(ValueError, match=r"waveform 1 of the batch gave NaN/inf features \(its peak amplitude is"):
        up([torch.randn(1600), huge])
