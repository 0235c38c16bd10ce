"""The throughput benchmark at tiny sizes: it runs end to end and writes the documented JSON."""

import json

import pytest
import torch

from s3prl_ekd.bench import batches as B
from s3prl_ekd.bench.command import format_table, main
from s3prl_ekd.bench.models import TeacherSize, random_teacher, s3prl_upstream

TINY = (
    "--teacher-layers 2 --teacher-dim 32 --teacher-ffn 64 --teacher-heads 4 --teacher-conv-dim 32 "
    "--target-layers 1,2 --student-dim 32 --student-ffn 64 --student-heads 4 --student-conv-dim 32 "
    "--batch-size 3 --length-scale 0.1 --steps 2 --warmup 1"
).split()
TINY_SIZE = TeacherSize(layers=2, dim=32, ffn=64, heads=4, conv_dim=32, conv_pos=16, conv_pos_groups=4)


def test_bucketing_cuts_padding():
    lengths = B.crop(B.librispeech_lengths(240, seed=1), B.CROP_SAMPLES)
    assert abs(sum(lengths) / len(lengths) / 16000 - 12.0) < 1.0  # ~12.3 s before the 15.6 s crop
    bucketed = B.make_batches(lengths, 24, bucketing=True)
    shuffled = B.make_batches(lengths, 24, bucketing=False)
    assert sorted(map(sorted, bucketed)) != sorted(map(sorted, shuffled))
    assert len(bucketed) == len(shuffled) == 10
    pad = lambda bs: sum(map(B.padding_fraction, bs)) / len(bs)
    assert pad(bucketed) < pad(shuffled) / 3
    assert max(max(b) for b in bucketed) <= B.CROP_SAMPLES


@pytest.mark.parametrize("arch", ["hubert", "wavlm"])
def test_s3prl_upstream_wraps_the_same_weights(arch):
    model = random_teacher(arch, TINY_SIZE)
    up = s3prl_upstream(model)
    wavs = [torch.randn(8000), torch.randn(8000)]
    hidden = up(wavs)["hidden_states"]
    assert len(hidden) == TINY_SIZE.layers + 1
    with torch.no_grad():
        last, _ = model.extract_features(torch.stack(wavs), padding_mask=None, mask=False)
    torch.testing.assert_close(hidden[-1], last)
    assert not any(p.requires_grad for p in up.parameters())


def test_benchmark_writes_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(TINY + ["--paths", "s3prl-style-1,s3prl-style", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["unit"].startswith("seconds of audio per second")
    assert set(report["paths"]) == {"s3prl-style-1", "s3prl-style"}
    for name, n in (("s3prl-style-1", 1), ("s3prl-style", 3)):
        r = report["paths"][name]
        assert r["n_teachers"] == n
        assert len(r["step_seconds"]) == len(r["audio_seconds"]) == 2  # warm-up excluded
        assert r["audio_seconds_per_second"] > 0 and r["peak_memory_mb"] > 0
        assert r["memory_kind"] == "cpu_rss_peak"
    assert set(report["ratios"]) == {"s3prl-style / s3prl-style-1"}
    assert "| s3prl-style |" in capsys.readouterr().out
    assert "s3prl-style / s3prl-style-1" in format_table(report)
