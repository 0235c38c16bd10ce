"""Probe features in padded batches: the same numbers as one file a call, and the same probe scores."""

import numpy as np
import pytest
import torch

from s3prl_ekd.probe import features as feat
from s3prl_ekd.probe.data import UpstreamSpec, read_probe_corpus
from s3prl_ekd.probe.evaluate import ProbeSettings, probe_features

# A padded batch and single calls run the conv and attention kernels on other shapes, so the
# float32 sums come in another order: features agree to ~1e-6 of values of order 1, not bit for bit.
TOL = 1e-4


@pytest.fixture(autouse=True)
def _one_thread():
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(before)


def _student_expert(tmp_path, config, exact=True):
    from s3prl_ekd.distill.student import EKDStudent
    from s3prl_ekd.distill.student_checkpoint import save_student
    from s3prl_ekd.distill.targets import TargetPlan

    torch.manual_seed(0)
    student = EKDStudent({**config, "exact_padding": exact}, TargetPlan.from_scheme("single", {"a": 32}))
    path = save_student(student, tmp_path / f"student-{exact}.ckpt", step=0)
    return feat.load_expert(UpstreamSpec("s", "ekd_student", str(path)))


def _calls(expert):
    calls = []
    expert.student.register_forward_hook(lambda module, args, out: calls.append(len(out.frame_lengths)))
    return calls


def test_length_batches_sort_and_cap_the_padded_size():
    # sorted: 1 (item 1), 3 (2), 3 (3), 5 (0), 10 (4); a batch holds items x longest <= 9
    assert feat.length_batches([5, 1, 3, 3, 10], 9) == [[1, 2, 3], [0], [4]]
    assert feat.length_batches([4, 4], 1) == [[0], [1]]  # longer than the cap: alone


def test_batched_features_equal_one_file_a_call(tiny_corpus, tmp_path, tiny_student_config):
    corpus = read_probe_corpus(tiny_corpus.root, max_train_frames=200, seed=0)
    expert = _student_expert(tmp_path, tiny_student_config)
    assert feat.pads_exactly(expert)
    calls = _calls(expert)
    batched = feat.extract_features(expert, corpus, batch_seconds=8.0)
    sizes = list(calls)
    assert sum(sizes) == len(corpus.files) and max(sizes) > 2 and len(sizes) < len(corpus.files) / 2
    calls.clear()
    single = feat.extract_features(expert, corpus, batch_seconds=0)
    assert calls == [1] * len(corpus.files)
    np.testing.assert_allclose(batched.pooled, single.pooled, atol=TOL, rtol=TOL)
    for split in single.frames:
        np.testing.assert_allclose(batched.frames[split], single.frames[split], atol=TOL, rtol=TOL)
    # the probes read the same numbers: features ~1e-6 apart move no item of the tiny corpus across
    # a decision boundary, so every task's per-item outcome and chosen C are the same
    settings = ProbeSettings(folds=3, draws=100, seed=0)
    a, b = probe_features(batched, corpus, settings), probe_features(single, corpus, settings)
    for task in settings.tasks:
        assert np.array_equal(a[task].correct, b[task].correct), task
        assert a[task].chosen_c == b[task].chosen_c, task


def test_upstreams_whose_padding_changes_results_run_one_file_a_call(tiny_corpus, tmp_path, tiny_student_config):
    corpus = read_probe_corpus(tiny_corpus.root, max_train_frames=20, seed=0)
    plain = _student_expert(tmp_path, tiny_student_config, exact=False)
    assert not feat.pads_exactly(plain)
    calls = _calls(plain)
    feat.extract_features(plain, corpus)
    assert calls == [1] * len(corpus.files)
    assert not feat.pads_exactly(feat.load_expert(UpstreamSpec("fbank", "fbank")))
