"""The demo end to end (quick preset, run once for the module) and its parts on hand-made data."""

import json
import math

import pytest
import torch

from s3prl_ekd.demo.report import best_per_task, markdown_table, write_report
from s3prl_ekd.demo.settings import DemoSettingsError, load_settings, merge
from s3prl_ekd.demo.teacher_training import LabelledUtterance, ObjectiveHead, lr_at

pytestmark = pytest.mark.slow  # end to end: `pytest -m "not slow"` leaves it out

TASKS = ["PR", "SID", "ER", "ASR"]


# ----- the quick demo, once ------------------------------------------------------------------
@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory):
    from s3prl_ekd.demo.experiment import run_demo

    out = tmp_path_factory.mktemp("demo")
    results = run_demo(load_settings("quick"), out)
    return out, results


def test_quick_demo_writes_table_json_and_chart(quick_demo):
    out, _ = quick_demo
    for name in ("results.md", "results.json", "results.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    data = json.loads((out / "results.json").read_text())
    names = [r["name"] for r in data["rows"]]
    assert names == [m["name"] for m in load_settings("quick")["methods"]]
    assert list(data["tasks"]) == TASKS + ["ASR-CER"]  # asr's CER beside its WER
    for row in data["rows"]:
        for task in data["tasks"]:
            value = row["metrics"][task]
            assert isinstance(value, float) and math.isfinite(value), (row["name"], task, value)
    table = (out / "results.md").read_text()
    for name in names:
        assert f"| {name} |" in table
    assert "n/a" not in table
    # the probe table leads, with an interval for every row and task; the harness table follows
    assert [r["name"] for r in data["probes"]["rows"]] == names
    for row in data["probes"]["rows"]:
        for task, s in row["scores"].items():
            assert s["low"] <= s["value"] <= s["high"], (row["name"], task, s)
    assert table.index("linear probes") < table.index("s3prl's downstream harness")


def test_quick_demo_students_differ_from_the_untrained_one(quick_demo):
    out, results = quick_demo
    rows = {r["name"]: r["metrics"] for r in results["rows"]}
    untrained = [rows["untrained"][t] for t in TASKS]
    students = [r for r in results["rows"] if r["kind"] in ("single", "ensemble")]
    # every student's row differs from the untrained student's (the quick preset trains PR long
    # enough for its PER to leave the all-blank 100%, so the rows part there at least)
    for r in students:
        assert [r["metrics"][t] for t in TASKS] != untrained, (r["name"], untrained)
    # ... and every student was really distilled: its features are not the untrained student's.
    from s3prl_ekd.distill.student_checkpoint import load_student

    wav = [torch.randn(16000, generator=torch.Generator().manual_seed(0))]
    base, _ = load_student(out / "students" / "untrained" / "student.ckpt")
    with torch.no_grad():
        ref = base.eval()(wav, with_heads=False).hidden_states[-1]
    for row in students:
        (ckpt,) = sorted((out / "students" / row["name"]).glob("states-*.ckpt"))
        student, _ = load_student(ckpt)
        with torch.no_grad():
            feats = student.eval()(wav, with_heads=False).hidden_states[-1]
        assert feats.shape == ref.shape
        assert (feats - ref).abs().max() > 1e-3, row["name"]


def test_quick_demo_chart_is_a_png_with_one_panel_per_task(quick_demo):
    out, _ = quick_demo
    from PIL import Image

    with Image.open(out / "results.png") as im:
        assert im.format == "PNG"
        width, height = im.size
    # four panels side by side: wider than tall, and large enough to read
    assert width > 2 * height and height >= 300


def test_quick_demo_teachers_load_through_s3prl_and_were_trained(quick_demo):
    out, _ = quick_demo
    import s3prl.hub as hub

    from s3prl_ekd.io.checkpoint import safe_load
    from s3prl_ekd.teachers.tiny import tiny_hubert_state

    settings = load_settings("quick")
    for k, (name, entry) in enumerate(settings["teachers"]["roster"].items()):
        ckpt = out / "teachers" / f"{name}.pt"
        expert = getattr(hub, entry["upstream"])(ckpt=str(ckpt))
        hidden = expert([torch.randn(16000)])["hidden_states"]
        assert len(hidden) == settings["teachers"]["model"]["encoder_layers"] + 1
        record = json.loads((out / "teachers" / f"{name}.json").read_text())
        assert record["objective"] == entry["objective"]
    # training moved the weights away from the random init they started from
    model = settings["teachers"]["model"]
    init = tiny_hubert_state(layers=model["encoder_layers"], dim=model["encoder_embed_dim"],
                             conv=model["conv_feature_layers"], seed=settings["seed"])
    trained = safe_load(out / "teachers" / "hubert.pt")["model_weight"]
    key = "encoder.layers.0.fc1.weight"
    assert not torch.equal(init["model_weight"][key], trained[key])


def test_quick_demo_resumes_without_redoing_anything(quick_demo):
    from s3prl_ekd.demo.experiment import run_demo

    out, first = quick_demo
    made = sorted(p for pattern in ("teachers/*.pt", "students/*/*.ckpt", "downstream/*/*/superb_result.json")
                  for p in out.glob(pattern))
    assert len(made) >= 3 + 7 + 8 * 4
    before = {p: p.stat().st_mtime_ns for p in made}
    again = run_demo(load_settings("quick"), out)
    assert [r["metrics"] for r in again["rows"]] == [r["metrics"] for r in first["rows"]]
    assert {p: p.stat().st_mtime_ns for p in made} == before  # every step found its outputs


# ----- parts ---------------------------------------------------------------------------------
def _results():
    rows = [
        {"name": "fbank", "kind": "floor", "description": "f", "upstream": "fbank",
         "metrics": {"PR": 80.0, "SID": 10.0, "ER": 30.0, "ASR": 99.0}},
        {"name": "single-a", "kind": "single", "description": "s", "upstream": "ekd_student",
         "metrics": {"PR": 40.0, "SID": 20.0, "ER": 50.0, "ASR": 70.0}},
        {"name": "average", "kind": "ensemble", "description": "e", "upstream": "ekd_student",
         "metrics": {"PR": 45.0, "SID": 35.0, "ER": 45.0, "ASR": 60.0}},
    ]
    return {"preset": "test", "tasks": {t: {} for t in TASKS}, "rows": rows, "timing": {"total": 12.0}}


def _probes():
    from s3prl_ekd.probe.evaluate import TASKS as PROBE_TASKS

    def entry(v):
        return {"value": v, "low": v - 2.0, "high": v + 3.0, "per_seed": [v - 1, v + 1], "c": [[0.1], [0.1]]}

    rows = [{"name": n, "kind": k, "scores": {"SID": entry(v)}}
            for n, k, v in [("fbank", "floor", 10.0), ("single-a", "single", 20.0), ("average", "ensemble", 35.0)]]
    comp = {"task": "SID", "a": "average", "b": "single-a", "why": "ensemble vs best single-teacher student",
            "value": 15.0, "low": 11.0, "high": 19.0, "significant": True, "a_better": True,
            "seeds_same_sign": 2, "seeds": 2}
    return {"tasks": {"SID": PROBE_TASKS["SID"]}, "rows": rows, "comparisons": [comp],
            "settings": {"items": {"SID": 480}, "draws": 1000}}


def test_report_leads_with_the_probes_and_labels_the_harness(tmp_path):
    results = {**_results(), "probes": _probes(), "seeds": [0, 1]}
    results["rows"][1]["metrics_per_seed"] = {"PR": [39.0, 41.0]}
    paths = write_report(results, tmp_path)
    text = paths["markdown"].read_text()
    assert text.index("linear probes") < text.index("| single-a | s | 20.0 [18.0, 23.0] | 19.0 / 21.0 |")
    assert text.index("single-a | s | 20.0 [18.0, 23.0]") < text.index("s3prl's downstream harness")
    assert "average +15.0 [+11.0, +19.0], same sign in 2/2 seeds (significantly better)" in text
    assert "| single-a | s | **40.0 ± 1.4** |" in text  # two seeds' mean and standard deviation
    from PIL import Image

    with Image.open(paths["chart"]) as im:
        assert im.format == "PNG"


def test_seeds_are_pooled_per_method():
    from s3prl_ekd.demo.experiment import pool_seeds, seed_count

    a = [{"name": "x", "metrics": {"PR": 10.0}}, {"name": "fbank", "metrics": {"PR": 50.0}}]
    b = [{"name": "x", "metrics": {"PR": 14.0}}]  # fbank is scored with the first seed only
    pooled = pool_seeds([a, b])
    assert pooled[0]["metrics"] == {"PR": 12.0} and pooled[0]["metrics_per_seed"] == {"PR": [10.0, 14.0]}
    assert pooled[1]["metrics"] == {"PR": 50.0}
    assert pool_seeds([a]) is a
    assert seed_count({"seeds": 3}) == 3
    with pytest.raises(DemoSettingsError, match="seeds"):
        seed_count({"seeds": 0})


def test_best_student_per_task_respects_the_metric_direction():
    best = best_per_task(_results()["rows"], TASKS)
    # PER and WER: lower is better; accuracies: higher; floors never count
    assert best == {"PR": ["single-a"], "SID": ["average"], "ER": ["single-a"], "ASR": ["average"]}


def test_best_student_ties_are_all_bold_and_a_full_tie_is_none():
    rows = [{"name": n, "kind": k, "metrics": {"SID": v}} for n, k, v in
            [("fbank", "floor", 90.0), ("a", "single", 25.0), ("b", "single", 25.04), ("c", "ensemble", 25.0)]]
    assert best_per_task(rows, ["SID"]) == {}  # 25.0 / 25.0 / 25.0 as printed: no winner
    rows[3]["metrics"]["SID"] = 12.5
    assert best_per_task(rows, ["SID"]) == {"SID": ["a", "b"]}


def test_markdown_table_has_every_row_and_bolds_the_best():
    table = markdown_table(_results())
    lines = table.splitlines()
    assert lines[0].startswith("| upstream | what it is | PR PER % ↓ | SID accuracy % ↑")
    assert lines[3] == "| single-a | s | **40.0** | 20.0 | **50.0** | 70.0 |"
    assert lines[4] == "| average | e | 45.0 | **35.0** | 45.0 | **60.0** |"


def test_write_report_round_trips_json(tmp_path):
    paths = write_report(_results(), tmp_path)
    assert json.loads(paths["json"].read_text())["rows"][1]["metrics"]["PR"] == 40.0
    assert "![results per task](results.png)" in paths["markdown"].read_text()


def test_settings_quick_overrides_default_and_unknown_keys_are_named(tmp_path):
    default, quick = load_settings("default"), load_settings("quick")
    assert quick["corpus"]["size"] == "tiny" and default["corpus"]["size"] == "demo"
    assert quick["methods"] == default["methods"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("pretrain:\n  stepz: 3\n")
    with pytest.raises(DemoSettingsError, match=r"unknown key\(s\) pretrain\.stepz: valid are \['steps', "):
        load_settings("default", str(bad))
    with pytest.raises(DemoSettingsError, match="preset"):
        load_settings("slow")
    bad.write_text("pretrain:\n  steps: 0\nmethods:\n  - {name: x, kind: single, scheme: mean}\n")
    with pytest.raises(DemoSettingsError, match=r"bad\.yaml over the 'default' preset\): `pretrain\.steps` must be an integer >= 1, got 0"):
        load_settings("default", str(bad))
    bad.write_text("methods:\n  - {name: x, kind: single, scheme: mean}\n")
    with pytest.raises(DemoSettingsError, match=r"`methods\[0\]\.scheme` must be one of \['single', 'average', 'concat', 'multihead'\]"):
        load_settings("default", str(bad))
    assert merge({"a": {"b": 1}}, {"a": {"b": 2}}) == {"a": {"b": 2}}


def test_learning_rate_warms_up_then_decays_to_zero():
    assert lr_at(0, 100, 1.0, 0.1) == pytest.approx(0.1)
    assert lr_at(9, 100, 1.0, 0.1) == pytest.approx(1.0)
    assert lr_at(55, 100, 1.0, 0.1) == pytest.approx(0.5)
    assert lr_at(100, 100, 1.0, 0.1) == 0.0


def test_objective_heads_compute_ctc_and_speaker_losses_by_hand():
    torch.manual_seed(0)
    feats = torch.randn(2, 6, 4)
    batch = [LabelledUtterance(torch.zeros(1), [1, 2], 0), LabelledUtterance(torch.zeros(1), [2], 1)]
    pad = torch.tensor([[False] * 6, [False] * 4 + [True] * 2])
    ctc = ObjectiveHead("phones", 4, 2)
    expected = torch.nn.functional.ctc_loss(
        ctc.proj(feats).log_softmax(-1).transpose(0, 1), torch.tensor([1, 2, 2]),
        torch.tensor([6, 4]), torch.tensor([2, 1]), blank=0)
    assert torch.allclose(ctc(feats, pad, batch), expected)
    spk = ObjectiveHead("speaker", 4, 2)
    pooled = torch.stack([feats[0].mean(0), feats[1, :4].mean(0)])  # padding left out of the mean
    expected = torch.nn.functional.cross_entropy(spk.proj(pooled), torch.tensor([0, 1]))
    assert torch.allclose(spk(feats, pad, batch), expected)
    with pytest.raises(ValueError, match="unknown teacher objective"):
        ObjectiveHead("emotion", 4, 2)
