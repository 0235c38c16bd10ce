"""The throughput benchmark at tiny sizes: it runs end to end and writes the documented JSON.

No timing is asserted (the machine is shared); only that every path ran, on the real pipeline.
"""

import json

import pytest

from s3prl_ekd.bench.command import format_table, main
from s3prl_ekd.bench.lengths import CROP_SAMPLES, librispeech_lengths, near_crop_lengths

pytestmark = pytest.mark.slow  # end to end: `pytest -m "not slow"` leaves it out

TINY = (
    "--teacher-layers 2 --teacher-dim 32 --teacher-ffn 64 --teacher-heads 4 --teacher-conv-dim 32 "
    "--target-layers 1,2 --student-dim 32 --student-ffn 64 --student-heads 4 --student-conv-dim 32 "
    "--batch-size 2 --length-scale 0.08 --steps 1 --warmup 1 --num-workers 0 --threads 1"
).split()


def test_librispeech_like_lengths():
    lengths = librispeech_lengths(2000, seed=1)
    mean_s = sum(lengths) / len(lengths) / 16000
    assert abs(mean_s - 12.3) < 0.3  # LibriSpeech 960 h: 12.3 s on average
    assert min(lengths) >= 1.3 * 16000 and max(lengths) <= 24.5 * 16000
    assert 0.1 < sum(l > CROP_SAMPLES for l in lengths) / len(lengths) < 0.3  # some get cropped at 15.6 s


def test_near_crop_lengths_are_distinct_and_just_under_the_crop():
    lengths = near_crop_lengths(48, seed=1)
    assert len(set(lengths)) == 48
    assert all(CROP_SAMPLES - 16000 <= n <= CROP_SAMPLES for n in lengths)


def test_benchmark_writes_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    argv = TINY + ["--ablations", "bucketing", "--speedups", '{"autocast": "bf16"}',
                   "--paths", "s3prl-style-1,s3prl-style,ours,ours-cached",
                   "--json", str(out), "--workdir", str(tmp_path)]
    assert main(argv) == 0
    report = json.loads(out.read_text())
    assert report["unit"].startswith("seconds of audio per second")
    assert report["speedups"]["autocast"] == "bf16" and report["threads"] == 1
    expected = {"s3prl-style-1": 1, "s3prl-style": 3, "ours": 3, "ours-cached": 3, "ours-no-bucketing": 3}
    assert {k: r["n_teachers"] for k, r in report["paths"].items()} == expected
    for r in report["paths"].values():
        assert len(r["step_seconds"]) == len(r["cpu_seconds"]) == len(r["audio_seconds"]) == 1  # warm-up excluded
        assert r["audio_seconds_per_second"] > 0 and r["audio_seconds_per_cpu_second"] > 0
        assert r["peak_memory_mb"] > 0 and r["memory_kind"] == "cpu_rss_peak"
        assert all(0 < a <= 2 * CROP_SAMPLES * 0.08 / 16000 for a in r["audio_seconds"])
    assert report["paths"]["ours"]["settings"]["bucketing"] is True
    check = report["paths"]["ours"]["settings"]["autocast_check"]  # teachers under bf16: checked against fp32
    assert check["dtype"] == "bfloat16" and check["min_cosine"] == 0.99 and set(check["teachers"]) == {"hubert0", "wavlm1", "hubert2"}
    assert check["passed"] == all(t["cos_min"] >= 0.99 for t in check["teachers"].values())
    assert "autocast_check" not in report["paths"]["s3prl-style"]["settings"]  # fp32 teachers: nothing to check
    assert report["paths"]["ours-no-bucketing"]["settings"]["bucketing"] is False
    cached = report["paths"]["ours-cached"]["settings"]
    counts = cached["target_cache_counts"]  # warm: every utterance not cropped is read from disk
    assert counts.get("misses", 0) == 0 and counts["hits"] > 0 and cached["target_cache_bytes"] > 0
    assert cached["target_cache_hit_rate"] == counts["hits"] / (counts["hits"] + counts.get("uncached", 0))
    assert "target_cache_bytes" not in report["paths"]["ours"]["settings"]
    # teachers of 2 layers give hidden states 0, 1, 2; targets read layers 1 and 2 of each
    hidden = report["paths"]["ours"]["settings"]["teacher_hidden_mb"]
    assert 0 < hidden["plan_layers"] and abs(hidden["plan_layers"] - hidden["all_layers"] * 2 / 3) < 1e-9
    assert set(report["ratios"]) == {
        "ours / s3prl-style", "ours / s3prl-style-1", "s3prl-style / s3prl-style-1",
        "ours / ours-no-bucketing",
        "ours-cached / s3prl-style-1", "ours-cached / s3prl-style", "ours-cached / ours",
    }
    assert set(report["ratios_cpu_time"]) == set(report["ratios"])
    table = capsys.readouterr().out
    assert "| ours-no-bucketing | 3 |" in table and "| ours / s3prl-style |" in table
    assert f"| {hidden['all_layers']:.0f} / {hidden['plan_layers']:.0f} |" in table
    assert format_table(report) in table
    assert not list(tmp_path.glob("s3prl-ekd-bench-*"))  # temporary teachers and corpus removed
