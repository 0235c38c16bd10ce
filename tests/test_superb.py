"""SUPERB configs, s3prl's own task experts and datasets on the tiny corpus, one harness run."""

import json
import os
from collections import Counter, defaultdict

import pytest
import torch
import yaml

from s3prl_ekd import s3prl_compat
from s3prl_ekd.corpus.phones import phone_set
from s3prl_ekd.superb.runs import TASKS, SuperbError, fill_config, parse_metric, run_mini_task

pytestmark = pytest.mark.slow  # end to end: `pytest -m "not slow"` leaves it out

# SUPERB's published settings (s3prl 0.4.18's task configs): steps, lr, batch, accumulation
SUPERB = {
    "pr": (100000, 1.0e-2, ("corpus", "batch_size", 16), 2),
    "sid": (200000, 1.0e-4, ("datarc", "train_batch_size", 8), 4),
    "er": (30000, 1.0e-4, ("datarc", "train_batch_size", 4), 8),
    "asr": (200000, 1.0e-4, ("datarc", "train_batch_size", 32), 1),
}


def _yaml(path):
    with open(path) as f:
        return yaml.safe_load(f)


@pytest.mark.parametrize("task", sorted(TASKS))
def test_full_configs_carry_superb_settings(task):
    cfg = _yaml(TASKS[task].config_path(mini=False))
    steps, lr, (group, key, batch), accum = SUPERB[task]
    assert cfg["runner"]["total_steps"] == steps and cfg["optimizer"]["lr"] == lr
    assert cfg["downstream_expert"][group][key] == batch
    assert cfg["runner"]["gradient_accumulate_steps"] == accum
    mini = _yaml(TASKS[task].config_path(mini=True))
    assert set(mini["downstream_expert"]) == set(cfg["downstream_expert"])  # same task shape


def test_shipped_vocabularies(root_dir):
    with open(os.path.join(root_dir, "downstream_configs/vocab/phoneme.txt")) as f:
        assert f.read().split() == phone_set()
    from s3prl.downstream.asr.dictionary import Dictionary

    d = Dictionary.load(os.path.join(root_dir, "downstream_configs/dict/char.dict"))
    assert set("ABCDEFGHIJKLMNOPQRSTUVWXYZ'|") <= set(d.symbols)


def _expert(task, tiny_corpus, tmp_path):
    """s3prl's own DownstreamExpert of the task, built from our filled mini config."""
    import importlib

    s3prl_compat.apply()
    cfg = fill_config(task, tiny_corpus.root)
    module = importlib.import_module(f"s3prl.downstream.{TASKS[task].downstream}.expert")
    return module.DownstreamExpert(upstream_dim=16, upstream_rate=320, expdir=str(tmp_path),
                                   **cfg)


@pytest.fixture
def one_thread():
    # two OpenMP threads on two busy cores made the ASR LSTM step 10x slower than one thread
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("task", sorted(TASKS))
def test_s3prl_experts_read_the_corpus_and_train_a_step(task, tiny_corpus, tmp_path, one_thread):
    expert = _expert(task, tiny_corpus, tmp_path)
    wavs, *others = next(iter(expert.get_dataloader("train")))
    assert all(len(w) > 8000 for w in wavs)
    feats = [torch.randn(len(w) // 320 + 1, 16) for w in wavs]
    loss = expert("train", feats, *others, records=defaultdict(list))
    loss.backward()
    assert torch.isfinite(loss)


def test_s3prl_datasets_give_the_expected_labels(tiny_corpus, root_dir, tmp_path):
    from pathlib import Path

    s3prl_compat.apply()
    # ASR: s3prl's SequenceDataset reads len_for_bucket + trans.txt; labels spell the transcript
    from s3prl.downstream.asr.dataset import SequenceDataset
    from s3prl.downstream.asr.dictionary import Dictionary

    rc = fill_config("asr", tiny_corpus.root)["downstream_expert"]["datarc"]
    d = Dictionary.load(rc["dict_path"])
    ds = SequenceDataset("test-clean", 1, d, **rc)
    assert len(ds) == 4
    for wavs, labels, names in (ds[i] for i in range(len(ds))):
        spk, chap, _ = names[0].split("-")
        trans = os.path.join(tiny_corpus.librispeech, "test-clean", spk, chap, f"{spk}-{chap}.trans.txt")
        with open(trans) as f:
            text = dict(line.rstrip("\n").split(" ", 1) for line in f)[names[0]]
        ids = [i for i in labels[0].tolist() if i != d.eos()]
        assert d.string(ids).replace(" ", "").replace("|", " ").strip() == text
    # SID: labels are the speaker numbers of VoxCeleb1's idXXXXX folders
    from s3prl.downstream.voxceleb1.dataset import SpeakerClassifiDataset

    rc = fill_config("sid", tiny_corpus.root)["downstream_expert"]["datarc"]
    train = SpeakerClassifiDataset("train", Path(rc["file_path"]), rc["meta_data"], rc["max_timestep"])
    assert Counter(train.label) == {0: 2, 1: 2, 2: 2, 3: 2}
    wav, label, name = train[0]
    assert name.startswith(f"id{10001 + label}-") and wav.ndim == 1
    assert len(SpeakerClassifiDataset("test", Path(rc["file_path"]), rc["meta_data"])) == 4
    # ER: fold 1 tests Session1, two of each of the four emotions in the tiny corpus
    from s3prl.downstream.emotion.dataset import IEMOCAPDataset

    rc = fill_config("er", tiny_corpus.root)["downstream_expert"]["datarc"]
    test = IEMOCAPDataset(rc["root"], os.path.join(rc["meta_data"], "Session1", "test_meta_data.json"))
    assert test.class_num == 4 and len(test) == 8
    assert Counter(test[i][1] for i in range(len(test))) == {0: 2, 1: 2, 2: 2, 3: 2}
    assert all(test[i][2].startswith("Ses01") for i in range(len(test)))


def test_parse_metric():
    log = "dev acc: 0.5\ntest acc: 0.25\nnoise\ntest acc: 0.75\n"
    assert parse_metric(log, "test", "acc") == 0.75
    with pytest.raises(SuperbError, match="no 'test-clean wer"):
        parse_metric(log, "test-clean", "wer")


def test_extra_metrics_are_read_from_the_evaluation_log(tmp_path):
    """asr prints its character error rate (uer) beside the WER: reported as `extra.cer`, also for
    a result written before extra metrics existed; a task without extras reports none."""
    from s3prl_ekd.superb.runs import TASKS, _extra_metrics

    log = tmp_path / "evaluate_test-clean.log"
    log.write_text("test-clean loss: 2.1\ntest-clean uer: 79.52973720608576\ntest-clean wer: 100.0\n")
    assert _extra_metrics(TASKS["asr"], log.read_text()) == {"cer": pytest.approx(79.52973720608576)}
    assert _extra_metrics(TASKS["er"], log.read_text()) == {}
    assert _extra_metrics(TASKS["asr"], "test-clean wer: 100.0\n") == {}
    old = {"task": "asr", "value": 100.0, "upstream": "fbank"}  # no "extra" key
    (tmp_path / "superb_result.json").write_text(json.dumps(old))
    result = run_mini_task("asr", "fbank", None, str(tmp_path), str(tmp_path))
    assert result == dict(old, extra={"cer": pytest.approx(79.52973720608576)})


def test_harness_run_of_one_task(tiny_corpus, tiny_student_config, tmp_path):
    """ER through run/run_downstream.py: train 3 steps, evaluate the saved checkpoint (-e)."""
    from s3prl_ekd.distill.student import EKDStudent
    from s3prl_ekd.distill.student_checkpoint import save_student
    from s3prl_ekd.distill.targets import TargetPlan

    student = EKDStudent(tiny_student_config, TargetPlan.from_scheme("single", {"t": 32}))
    ckpt = tmp_path / "student.ckpt"
    save_student(student, str(ckpt), step=0)
    expdir = tmp_path / "er"
    result = run_mini_task("er", "ekd_student", str(ckpt), tiny_corpus.root, str(expdir), steps=3)
    # SUPERB's protocol: the dev-best checkpoint (runner-written, loaded back weights-only)
    assert result["metric"] == "acc" and result["checkpoint"] in ("dev-best.ckpt", "states-3.ckpt")
    assert (expdir / "states-3.ckpt").is_file()
    assert 0.0 <= result["value"] <= 100.0 and result["chance"] == 25.0 and result["extra"] == {}
    with open(expdir / "evaluate_test.log") as f:
        assert f"test acc: {result['raw']}" in f.read()
    # the task's own prediction files agree with the reported accuracy
    with open(expdir / "test_fold1_predict.txt") as p, open(expdir / "test_fold1_truth.txt") as t:
        pairs = list(zip(p.read().split("\n"), t.read().split("\n")))
    hits = [a == b for a, b in pairs if a]
    assert result["value"] == pytest.approx(100.0 * sum(hits) / len(hits))
    with open(expdir / "superb_result.json") as f:
        assert json.load(f) == result
    # resumable: a finished result is returned without running anything
    assert run_mini_task("er", "ekd_student", str(ckpt), tiny_corpus.root, str(expdir), steps=3) == result


def test_in_process_run_restores_builtins_isinstance(tmp_path):
    """s3prl's main() wraps builtins.isinstance each call; in-process runs must not stack wrappers."""
    import builtins

    from s3prl_ekd.superb.runs import SuperbError, _run_in_process

    original = builtins.isinstance
    for _ in range(2):
        with pytest.raises(SuperbError):
            _run_in_process(["python", "run_downstream.py", "-m", "train", "-d", "no_such_task"],
                            str(tmp_path / "log.txt"), threads=1)
    assert builtins.isinstance is original
