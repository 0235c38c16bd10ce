"""Distorted student input: SNRs as drawn, reverberation, off = identity, config errors."""

import math

import numpy as np
import pytest
import soundfile as sf
import torch

from s3prl_ekd.pretrain.ekd.distortions import (
    Distorter,
    DistortionConfigError,
    add_noise_at_snr,
    make_distortion_config,
    synthetic_rir,
)


def speech_like(n=16000, seed=0):
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(n) / 16000
    return 0.3 * torch.sin(2 * math.pi * 220 * t) + 0.05 * torch.randn(n, generator=g)


def snr_by_hand(clean, noisy):
    noise = noisy.double() - clean.double()
    return 10 * math.log10(float(clean.double().pow(2).mean() / noise.pow(2).mean()))


def test_off_is_identity():
    wavs = [speech_like(8000), speech_like(12000, 1)]
    for cfg in ({}, {"enabled": False, "gaussian_noise": {"prob": 1.0}}, {"enabled": True}):
        out = Distorter(cfg)(wavs, torch.Generator().manual_seed(0))
        assert all(torch.equal(a, b) for a, b in zip(out, wavs))


def test_gaussian_noise_snr_matches_the_drawn_value():
    d = Distorter({"enabled": True, "gaussian_noise": {"prob": 1.0, "snr_db": [0.0, 30.0]}})
    wavs = [speech_like(16000, s) for s in range(4)]
    out = d(wavs, torch.Generator().manual_seed(1))
    drawn = [a[0]["snr_db"] for a in d.last_applied]
    assert len(set(drawn)) == 4 and all(0 <= s <= 30 for s in drawn)
    for clean, noisy, snr in zip(wavs, out, drawn):
        assert snr_by_hand(clean, noisy) == pytest.approx(snr, abs=1e-3)
    assert all(torch.equal(w, speech_like(16000, s)) for s, w in enumerate(wavs))  # clean copy untouched


def test_add_noise_at_snr_by_hand():
    clean = torch.tensor([1.0, -1.0, 1.0, -1.0])  # power 1
    noise = torch.tensor([2.0, 2.0, -2.0, -2.0])  # power 4
    out = add_noise_at_snr(clean, noise, 10.0)  # wanted noise power 0.1: gain sqrt(0.1 / 4)
    assert torch.allclose(out - clean, noise * math.sqrt(0.1 / 4))


def test_noise_files_snr_and_excerpt(tmp_path):
    folder = tmp_path / "musan" / "noise"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    sf.write(str(folder / "hum.wav"), (0.1 * rng.standard_normal(4000)).astype(np.float32), 16000)  # shorter: tiled
    cfg = {"enabled": True, "noise_files": {"prob": 1.0, "folder": str(tmp_path / "musan"), "snr_db": [5.0, 5.0]}}
    d = Distorter(cfg)
    clean = speech_like(16000)
    out = d([clean], torch.Generator().manual_seed(2))[0]
    assert d.last_applied[0][0]["kind"] == "noise_file" and d.last_applied[0][0]["path"].endswith("hum.wav")
    assert snr_by_hand(clean, out) == pytest.approx(5.0, abs=1e-3)


def test_reverberation_keeps_power_and_spreads_energy():
    d = Distorter({"enabled": True, "reverberation": {"prob": 1.0, "rt60": [0.3, 0.3], "drr_db": [3.0, 3.0]}})
    clean = torch.zeros(16000)
    clean[100] = 1.0  # an impulse shows the impulse response
    out = d([clean], torch.Generator().manual_seed(3))[0]
    assert d.last_applied[0] == [{"kind": "reverberation", "rt60": 0.3, "drr_db": 3.0}]
    assert float(out.pow(2).mean()) == pytest.approx(float(clean.pow(2).mean()), rel=1e-4)
    assert out[:100].abs().max() < 1e-5  # causal
    assert out[200:100 + 4800].abs().max() > 0  # a tail of ~0.3 s


def test_synthetic_rir_direct_to_reverberant_ratio_and_decay():
    rir = synthetic_rir(0.5, 6.0, torch.Generator().manual_seed(0))
    assert len(rir) == 8000 and rir[0] == 1.0
    assert 10 * math.log10(1.0 / float(rir[1:].pow(2).sum())) == pytest.approx(6.0, abs=1e-4)
    early, late = rir[1:800].pow(2).mean(), rir[-800:].pow(2).mean()
    assert late < early * 1e-3  # 60 dB over rt60: the last tenth is far quieter


def test_same_generator_same_distortions():
    cfg = {"enabled": True, "gaussian_noise": {"prob": 0.5}, "reverberation": {"prob": 0.5}}
    wavs = [speech_like(4000, s) for s in range(3)]
    a = Distorter(cfg)(wavs, torch.Generator().manual_seed(7))
    b = Distorter(cfg)(wavs, torch.Generator().manual_seed(7))
    assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_config_errors_name_the_key(tmp_path):
    with pytest.raises(DistortionConfigError, match="distortions.gaussian_noise.snr"):
        make_distortion_config({"gaussian_noise": {"snr": [1, 2]}})
    with pytest.raises(DistortionConfigError, match="distortions.babble"):
        make_distortion_config({"babble": {}})
    with pytest.raises(DistortionConfigError, match="> 1"):
        make_distortion_config({"gaussian_noise": {"prob": 0.7}, "noise_files": {"prob": 0.7, "folder": "x"}})
    with pytest.raises(DistortionConfigError, match="low <= high"):
        make_distortion_config({"reverberation": {"rt60": [0.8, 0.2]}})
    with pytest.raises(DistortionConfigError, match="needs distortions.noise_files.folder"):
        make_distortion_config({"enabled": True, "noise_files": {"prob": 0.5}})
    with pytest.raises(DistortionConfigError, match="no noise files"):
        Distorter({"enabled": True, "noise_files": {"prob": 0.5, "folder": str(tmp_path)}})
