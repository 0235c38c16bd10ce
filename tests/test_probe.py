"""Linear probes: items read from the corpus, features and their cache, protocols, bootstrap, CLI."""

import json

import numpy as np
import pytest
import torch

from s3prl_ekd.probe import stats
from s3prl_ekd.probe.data import POSITION_HOP, FrameSet, ProbeCorpus, UtteranceSet, read_probe_corpus
from s3prl_ekd.probe.evaluate import ProbeSettings, probe_features, summarise
from s3prl_ekd.probe.features import Features, UpstreamSpec
from s3prl_ekd.probe.linear import cross_validated, fixed_split, group_folds, inner_split, stratified_folds


# ----- synthetic items and features ------------------------------------------------------------
def synthetic_corpus(n_speakers=8, per_speaker=10, n_utts=6, frames_per_utt=40, seed=0) -> ProbeCorpus:
    """Items only (no audio): speakers, emotions in 5 sessions, phones at positions of 3 splits."""
    rng = np.random.default_rng(seed)
    n_sid = n_speakers * per_speaker
    n_er = 5 * 16
    speakers = UtteranceSet(np.arange(n_sid), np.repeat(np.arange(n_speakers), per_speaker))
    emotions = UtteranceSet(n_sid + np.arange(n_er), np.tile(np.arange(4), n_er // 4), np.repeat(np.arange(1, 6), 16))
    frames = {}
    for k, split in enumerate(("train", "dev", "test")):
        utt = np.repeat(np.arange(n_utts), frames_per_utt)
        frames[split] = FrameSet(np.full(len(utt), k), np.zeros(len(utt), int), rng.integers(0, 5, len(utt)), utt)
    files = [f"f{i}" for i in range(n_sid + n_er)]
    return ProbeCorpus("/nowhere", files, [f"p{i}" for i in range(5)], frames, speakers, emotions)


def planted_features(corpus: ProbeCorpus, strength: float, seed: int, dim: int = 16) -> Features:
    """Random features plus ``strength`` x a one-hot of each item's label (speaker, emotion, phone)."""
    rng = np.random.default_rng(seed)
    pooled = rng.normal(size=(len(corpus.files), dim)).astype(np.float32)
    pooled[corpus.speakers.file, corpus.speakers.label] += strength
    pooled[corpus.emotions.file, corpus.emotions.label] += strength
    frames = {}
    for split, fs in corpus.frames.items():
        x = rng.normal(size=(len(fs.label), dim)).astype(np.float32)
        x[np.arange(len(fs.label)), fs.label] += strength
        frames[split] = x
    return Features(pooled, frames)


SETTINGS = ProbeSettings(folds=5, draws=500, seed=0)


@pytest.fixture(autouse=True)
def _one_blas_thread():
    # run_probes does the same: BLAS threads on 2 shared cores only slow the small fits down
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        yield


def _summary(corpus, strength_a=3.0):
    outcomes = {
        "planted": [probe_features(planted_features(corpus, strength_a, 1), corpus, SETTINGS)],
        "random": [probe_features(planted_features(corpus, 0.0, 2), corpus, SETTINGS)],
    }
    return summarise(outcomes, {"planted": "", "random": ""}, SETTINGS)


def test_planted_speaker_signal_beats_random_features_with_interval_excluding_zero():
    corpus = synthetic_corpus()
    result = _summary(corpus)
    rows = {r["name"]: r["scores"] for r in result["rows"]}
    assert rows["planted"]["SID"]["value"] > 80 and rows["random"]["SID"]["value"] < 40  # chance 12.5
    for task in ("PR", "SID", "ER"):
        for r in rows.values():
            assert r[task]["low"] <= r[task]["value"] <= r[task]["high"], (task, r[task])
    (sid,) = [c for c in result["comparisons"] if c["task"] == "SID"]
    assert (sid["a"], sid["b"], sid["why"]) == ("planted", "random", "pair")
    assert sid["significant"] and sid["a_better"] and sid["low"] > 0
    (pr,) = [c for c in result["comparisons"] if c["task"] == "PR"]
    assert pr["significant"] and pr["a_better"] and pr["high"] < 0  # PR is an error rate: lower is better
    # the reading names the verdict
    from s3prl_ekd.probe.report import probe_markdown

    text = probe_markdown(result)
    assert "| planted |" in text and "planted vs random" in text and "better" in text


def test_identical_inputs_give_identical_numbers():
    corpus = synthetic_corpus()
    assert json.dumps(_summary(corpus), sort_keys=True) == json.dumps(_summary(corpus), sort_keys=True)


def test_equal_rows_differ_by_exactly_zero_and_not_significantly():
    corpus = synthetic_corpus()
    out = probe_features(planted_features(corpus, 1.0, 3), corpus, SETTINGS)
    result = summarise({"a": [out], "b": [out]}, {}, SETTINGS)
    for c in result["comparisons"]:
        assert (c["value"], c["low"], c["high"], c["significant"]) == (0.0, 0.0, 0.0, False)


def test_bootstrap_matches_a_hand_computed_resample():
    correct, total = np.array([3.0, 0.0, 5.0, 2.0]), np.array([4.0, 2.0, 5.0, 4.0])
    assert stats.score(correct, total) == pytest.approx(100 * 10 / 15)
    assert stats.score(correct, total, error=True) == pytest.approx(100 * 5 / 15)
    idx = stats.draws(4, n_draws=50, seed=7)
    assert np.array_equal(idx, stats.draws(4, n_draws=50, seed=7)) and idx.shape == (50, 4)
    values = stats.resampled(correct, total, idx)
    for d in (0, 17, 49):
        i = idx[d]
        assert values[d] == pytest.approx(100 * correct[i].sum() / total[i].sum())
    low, high = stats.interval(values)
    assert low == pytest.approx(np.percentile(values, 2.5)) and high == pytest.approx(np.percentile(values, 97.5))


def test_seeds_are_pooled_as_the_mean_with_per_seed_values():
    corpus = synthetic_corpus()
    runs = [probe_features(planted_features(corpus, s, 10 + k), corpus, SETTINGS) for k, s in enumerate((1.0, 2.0))]
    result = summarise({"x": runs, "y": [probe_features(planted_features(corpus, 0.0, 5), corpus, SETTINGS)] * 2},
                       {}, SETTINGS)
    x = result["rows"][0]["scores"]["SID"]
    assert len(x["per_seed"]) == 2 and x["value"] == pytest.approx(np.mean(x["per_seed"]))
    (c,) = [c for c in result["comparisons"] if c["task"] == "SID"]
    assert c["seeds"] == 2 and 0 <= c["seeds_same_sign"] <= 2


# ----- protocols: held-out choices, folds ------------------------------------------------------
def test_c_is_chosen_without_looking_at_test_labels():
    corpus = synthetic_corpus()
    f = planted_features(corpus, 1.0, 4)
    fr = corpus.frames
    shuffled = np.random.default_rng(0).permutation(fr["test"].label)
    a = fixed_split(f.frames["train"], fr["train"].label, f.frames["dev"], fr["dev"].label,
                    f.frames["test"], fr["test"].label, fr["test"].utterance)
    b = fixed_split(f.frames["train"], fr["train"].label, f.frames["dev"], fr["dev"].label,
                    f.frames["test"], shuffled, fr["test"].utterance)
    assert a.chosen_c == b.chosen_c
    assert a.total.tolist() == [40.0] * 6  # one item per test utterance, its positions counted


def test_folds_and_inner_splits_keep_test_items_out():
    y = np.repeat(np.arange(4), 5)
    folds = stratified_folds(y, 5, seed=0)
    assert len(folds) == 5 and sorted(np.concatenate([t for _, t in folds]).tolist()) == list(range(20))
    assert len(stratified_folds(np.repeat(np.arange(3), 3), 5, 0)) == 3  # fewer items than folds in a class
    groups = np.repeat(np.arange(1, 6), 4)
    for train, test in group_folds(groups):
        assert len(np.unique(groups[test])) == 1 and not set(groups[train]) & set(groups[test])
        fit, val = inner_split(y[train] % 2, groups[train], seed=1)
        assert len(np.unique(groups[train][val])) == 1 and not set(groups[train][fit]) & set(groups[train][val])
    fit, val = inner_split(y, None, seed=0)
    assert sorted(fit.tolist() + val.tolist()) == list(range(20)) and set(y[fit]) == set(y)
    out = cross_validated(np.eye(4)[y] + 0.01 * np.arange(20)[:, None], y, folds, None, 0)
    assert out.correct.sum() == 20 and len(out.chosen_c) == 5


# ----- the real corpus: items, features, cache -------------------------------------------------
def test_items_are_read_from_the_corpus_layouts(tiny_corpus):
    from s3prl_ekd.corpus.alignment import read_alignments

    corpus = read_probe_corpus(tiny_corpus.root, max_train_frames=None, seed=0)
    aligned = read_alignments(f"{tiny_corpus.alignments}/test-clean.txt")
    test = corpus.frames["test"]
    assert len(np.unique(test.utterance)) == len(aligned)
    assert len(test.label) == sum(segs[-1][2] // POSITION_HOP for segs in aligned.values())
    uid, segs = sorted(aligned.items())[0]
    first = test.file == test.file[0]
    assert corpus.files[test.file[0]].endswith(f"{uid}.flac")
    # position t's label is the phone (stress dropped) of the span holding sample t * 320 + 160
    t = 3
    centre = t * POSITION_HOP + POSITION_HOP // 2
    phone = next(p for p, a, b in segs if a <= centre < b)
    assert corpus.phones[test.label[first][t]] == phone.rstrip("012")
    n_vox = len(open(tiny_corpus.iden_split).read().split("\n")) - 1
    assert len(corpus.speakers.label) == n_vox
    assert sorted(set(corpus.emotions.group.tolist())) == [1, 2, 3, 4, 5]
    assert len(corpus.emotions.label) == 40 and set(corpus.emotions.label.tolist()) == {0, 1, 2, 3}
    sub = read_probe_corpus(tiny_corpus.root, max_train_frames=50, seed=3)
    assert len(sub.frames["train"].label) == 50
    assert np.array_equal(sub.frames["train"].sample, read_probe_corpus(tiny_corpus.root, 50, 3).frames["train"].sample)


def test_features_are_the_upstreams_own_and_cached(tiny_corpus, tmp_path, monkeypatch):
    from s3prl_ekd.io.audio import load_audio
    from s3prl_ekd.probe import features as feat

    corpus = read_probe_corpus(tiny_corpus.root, max_train_frames=30, seed=0)
    spec = UpstreamSpec("fbank", "fbank")
    got = feat.cached_features(spec, corpus, tmp_path)
    expert = feat.load_expert(spec)
    split = corpus.frames["dev"]
    i = int(split.file[0])
    with torch.no_grad():
        h = expert([load_audio(f"{tiny_corpus.root}/{corpus.files[i]}")])["hidden_states"][0][0]
    assert np.allclose(got.pooled[i], h.mean(0).numpy(), atol=1e-5)  # same op, float32 summation order
    rows = np.nonzero(split.file == i)[0]
    rate = expert.get_downsample_rates("hidden_states")
    assert np.array_equal(got.frames["dev"][rows], h[np.minimum(split.sample[rows] // rate, len(h) - 1)].numpy())
    # the second call reads the cache: no upstream is loaded
    monkeypatch.setattr(feat, "load_expert", lambda spec: pytest.fail("features were extracted again"))
    again = feat.cached_features(spec, corpus, tmp_path)
    assert np.array_equal(again.pooled, got.pooled) and np.array_equal(again.frames["test"], got.frames["test"])
    (cached,) = tmp_path.glob("fbank-*.npz")
    with pytest.raises(ValueError, match="upstream gives 1"):
        feat.extract_features(expert, corpus, layers=[2])


def test_probe_command_on_the_tiny_corpus(tiny_corpus, tmp_path, capsys):
    from s3prl_ekd.cli import main

    rc = main(["probe", "--corpus", tiny_corpus.root, "-u", "fbank", "-u", "mel=fbank", "--frames", "200",
               "--draws", "100", "--out", str(tmp_path)])
    assert rc == 0
    data = json.loads((tmp_path / "probes.json").read_text())
    assert [r["name"] for r in data["rows"]] == ["fbank", "mel"]
    # the same upstream twice: the same numbers, a difference of exactly 0
    assert data["rows"][0]["scores"] == data["rows"][1]["scores"]
    assert all(c["value"] == 0.0 and not c["significant"] for c in data["comparisons"])
    assert "| fbank |" in (tmp_path / "probes.md").read_text()
    with pytest.raises(SystemExit, match="not rows"):
        main(["probe", "--corpus", tiny_corpus.root, "-u", "fbank", "--ensemble", "nope", "--out", str(tmp_path)])


def test_upstream_specs_parse():
    from s3prl_ekd.probe.command import parse_upstream

    assert parse_upstream("fbank") == UpstreamSpec("fbank", "fbank", None)
    assert parse_upstream("me=ekd_student:/a/b.ckpt") == UpstreamSpec("me", "ekd_student", "/a/b.ckpt")
    assert parse_upstream("hubert_local:x.pt") == UpstreamSpec("hubert_local", "hubert_local", "x.pt")


def test_settings_from_a_mapping_are_checked_naming_the_key():
    s = ProbeSettings.from_mapping({"grid": [0.1, 1], "tasks": ["PR"], "max_train_frames": None})
    assert (s.grid, s.tasks, s.max_train_frames, s.folds) == ((0.1, 1.0), ("PR",), None, ProbeSettings().folds)
    with pytest.raises(ValueError, match=r"`probes\.tasks\[0\]` must be one of \['PR', 'SID', 'ER'\], got 'XX'"):
        ProbeSettings.from_mapping({"tasks": ["XX"]})
    with pytest.raises(ValueError, match=r"unknown key\(s\) probes\.fold: valid are \['max_train_frames', 'folds', "):
        ProbeSettings.from_mapping({"fold": 3})
    with pytest.raises(ValueError, match=r"`probes\.folds` must be an integer >= 2, got 1"):
        ProbeSettings.from_mapping({"folds": 1})
