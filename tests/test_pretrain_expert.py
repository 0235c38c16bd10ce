"""The pretrain expert: s3prl's DistilHuBERT objective, records, checkpoints that load as ekd_student."""

import argparse
from collections import defaultdict

import pytest
import torch
import torch.nn.functional as F
from pretrain_helpers import tiny_runner_config, tiny_upstream_config

from s3prl_ekd.distill.student_checkpoint import load_student
from s3prl_ekd.io.atomic import atomic_save
from s3prl_ekd.pretrain.ekd.dataset import WaveBatch
from s3prl_ekd.pretrain.ekd.pretrain_expert import UpstreamPretrainExpert
from s3prl_ekd.teachers.tiny import write_tiny_hubert


@pytest.fixture(scope="module")
def teacher12(tmp_path_factory):
    """A tiny HuBERT with 12 layers, so the targets are DistilHuBERT's layers 4, 8 and 12."""
    return str(write_tiny_hubert(tmp_path_factory.mktemp("t12") / "hubert12.pt", layers=12, seed=3))


def make_expert(data, teachers, scheme="single", layers=(4, 8, 12), **extra):
    cfg = tiny_upstream_config(teachers, scheme, **extra)
    cfg["targets"]["layers"] = list(layers)
    datarc = tiny_runner_config(data)["pretrain_expert"]["datarc"]
    return UpstreamPretrainExpert(datarc, cfg, device="cpu")


def equal_length_batch(n=2, length=16000, seed=0):
    g = torch.Generator().manual_seed(seed)
    return WaveBatch(0.1 * torch.randn(n, length, generator=g), torch.full((n,), length))


def test_loss_equals_s3prl_distilhubert_objective(tiny_librispeech, teacher12):
    """One teacher, layers 4/8/12: our loss is s3prl's distiller loss (L1 + cosine, no masking
    needed on equal lengths) computed by hand on s3prl's own DistillerModel with our weights."""
    from s3prl.upstream.distiller.model import DistillerConfig, DistillerModel

    from s3prl_ekd.distill.student_checkpoint import to_s3prl_distiller

    expert = make_expert(tiny_librispeech, [{"name": "hubert", "upstream": "hubert_local", "ckpt": teacher12}])
    assert expert.plan.names == ["hubert/L4", "hubert/L8", "hubert/L12"]
    expert.eval()  # no dropout: s3prl's model and ours see the same weights, give the same predictions
    batch = equal_length_batch()
    ours = expert.distill_step(batch)

    s3prl_format = to_s3prl_distiller(expert.student)
    distiller = DistillerModel(DistillerConfig(s3prl_format["Config"]["distiller"]))
    distiller.load_state_dict(s3prl_format["Distiller"])
    distiller.eval()
    with torch.no_grad():
        _, _, pred, _ = distiller(batch.wavs, torch.ones_like(batch.wavs))  # B x N x T x D
        hidden = expert.teachers.teachers["hubert"]([w for w in batch.wavs])  # s3prl's hidden_states
    t = min(pred.shape[2], hidden[0].shape[1])
    target = torch.stack([hidden[l][:, :t] for l in (4, 8, 12)], dim=1)
    pred = pred[:, :, :t]
    rec = (pred - target).abs().mean()
    sim = -F.logsigmoid(F.cosine_similarity(pred, target, dim=-1)).mean()
    s3prl_loss = rec + 1.0 * sim  # loss_type l1, cosine_loss 1, feat_pen_loss 0
    assert torch.allclose(ours.loss, s3prl_loss, atol=1e-6), (float(ours.loss), float(s3prl_loss))
    assert torch.allclose(torch.stack(ours.predictions, 1), pred, atol=1e-5)
    assert torch.allclose(torch.stack(ours.targets, 1), target)
    for i, layer in enumerate((4, 8, 12)):  # per-target records are s3prl's per-layer terms
        assert float(ours.records[f"hubert/L{layer}/l1"]) == pytest.approx(float((pred[:, i] - target[:, i]).abs().mean()), abs=1e-6)


def test_records_name_teacher_and_layer_and_are_logged(tiny_librispeech, tiny_teachers):
    teachers = [
        {"name": "hubert", "upstream": "hubert_local", "ckpt": tiny_teachers["hubert"]},
        {"name": "wavlm", "upstream": "wavlm_local", "ckpt": tiny_teachers["wavlm"]},
    ]
    expert = make_expert(tiny_librispeech, teachers, "multihead", layers=(2, 4))
    expert.train()
    assert expert.student.training and not any(m.training for m in expert.teachers.modules())
    records = defaultdict(list)
    for step in (1, 2):
        loss, records = expert(equal_length_batch(seed=step), records=records, global_step=step, log_step=2)
        loss.backward()
    assert sorted(records) == sorted(f"{n}/L{l}/{k}" for n in ("hubert", "wavlm") for l in (2, 4) for k in ("l1", "cos", "loss"))
    assert all(len(v) == 2 for v in records.values())

    class Logger:
        def __init__(self):
            self.scalars = {}

        def add_scalar(self, tag, value, global_step):
            self.scalars[tag] = (value, global_step)

    logger = Logger()
    expert.log_records(records=records, logger=logger, prefix="ekd/train-", global_step=2)
    value, step = logger.scalars["ekd/train-wavlm/L4/l1"]
    assert step == 2 and value == pytest.approx(float(torch.stack(records["wavlm/L4/l1"]).mean()))
    assert all(p.grad is None for p in expert.teachers.parameters())  # teachers are frozen


def test_checkpoint_keeps_runner_keys_and_loads_as_ekd_student(tiny_librispeech, tiny_teachers, tmp_path):
    import s3prl.hub

    import s3prl_ekd

    teachers = [{"name": "hubert", "upstream": "hubert_local", "ckpt": tiny_teachers["hubert"]}]
    expert = make_expert(tiny_librispeech, teachers, layers=(2, 4))
    runner_config = tiny_runner_config(tiny_librispeech)
    expert.global_step = 7
    states = {"Optimizer": {}, "Step": 6, "Args": argparse.Namespace(upstream="ekd"), "Config": runner_config}
    states = expert.add_state_to_save(states)
    assert states["Step"] == 7  # the updates done (s3prl's Runner would store 6)
    assert set(states["Config"]) >= {"runner", "optimizer", "pretrain_expert", "student", "plan", "teachers"}
    assert states["Upstream_Config"]["teachers"][0]["ckpt"] == tiny_teachers["hubert"]
    path = atomic_save(states, tmp_path / "states-7.ckpt")

    student, state = load_student(path)
    assert state["Step"] == 7 and student.plan.names == ["hubert/L2", "hubert/L4"]
    s3prl_ekd.register()
    upstream = getattr(s3prl.hub, "ekd_student")(ckpt=str(path))
    upstream.eval()
    expert.eval()
    wavs = [torch.randn(12000), torch.randn(9000)]
    with torch.no_grad():
        ours = expert.student(wavs).hidden_states
        theirs = upstream(wavs)["hidden_states"]
    assert len(theirs) == 3 and all(torch.allclose(a, b) for a, b in zip(ours, theirs))

    fresh = make_expert(tiny_librispeech, teachers, layers=(2, 4))
    fresh.load_model(states)
    assert all(torch.equal(a, b) for a, b in zip(fresh.student.state_dict().values(), expert.student.state_dict().values()))
    assert fresh._resume_step == 7


def test_distorted_student_clean_teachers(tiny_librispeech, tiny_teachers):
    teachers = [{"name": "hubert", "upstream": "hubert_local", "ckpt": tiny_teachers["hubert"]}]
    clean = make_expert(tiny_librispeech, teachers, layers=(2, 4))
    noisy = make_expert(
        tiny_librispeech, teachers, layers=(2, 4),
        distortions={"enabled": True, "gaussian_noise": {"prob": 1.0, "snr_db": [0.0, 0.0]}},
    )
    noisy.student.load_state_dict(clean.student.state_dict())
    clean.eval()
    noisy.eval()
    batch = equal_length_batch()
    a = clean.distill_step(batch)
    b = noisy.distill_step(batch, torch.Generator().manual_seed(0))
    assert all(torch.equal(x, y) for x, y in zip(a.targets, b.targets))  # teachers heard clean audio
    assert not torch.allclose(a.predictions[0], b.predictions[0])  # the student heard noise
    assert [d[0]["kind"] for d in noisy.distorter.last_applied] == ["gaussian_noise"] * 2


def test_multi_gpu_points_to_torchrun(tiny_librispeech, tiny_teachers):
    teachers = [{"name": "hubert", "upstream": "hubert_local", "ckpt": tiny_teachers["hubert"]}]
    cfg = tiny_upstream_config(teachers)
    datarc = tiny_runner_config(tiny_librispeech)["pretrain_expert"]["datarc"]
    with pytest.raises(ValueError, match="torchrun"):
        UpstreamPretrainExpert(datarc, cfg, device="cpu", multi_gpu=True)


def test_init_from_copies_the_teachers_conv_and_blocks(tiny_librispeech, tiny_teachers):
    teachers = [
        {"name": "hubert", "upstream": "hubert_local", "ckpt": tiny_teachers["hubert"]},
        {"name": "wavlm", "upstream": "wavlm_local", "ckpt": tiny_teachers["wavlm"]},
    ]
    expert = make_expert(tiny_librispeech, teachers, "average", layers=(2, 4), init_from={"teacher": "hubert"})
    teacher = expert.teachers.teachers["hubert"].expert.model.state_dict()
    student = expert.student.state_dict()
    for key in ("feature_extractor.conv_layers.0.0.weight", "encoder.layers.1.fc2.weight", "encoder.pos_conv.0.bias"):
        assert torch.equal(student[key], teacher[key]), key


def test_files_skipped_in_loader_workers_reach_tensorboard(tiny_librispeech, tiny_teachers, tmp_path):
    """A file that cannot be read is skipped in a loader *worker process*; the batch carries the
    count to the expert, which logs the running total as ``audio/skipped`` scalars."""
    import os
    import shutil

    from s3prl_ekd.pretrain.ekd.dataset import read_length_table, write_length_table

    root = tiny_librispeech["libri_root"]
    shutil.copy(f"{tiny_librispeech['file_path']}/train-clean-100.csv", tmp_path / "train-clean-100.csv")
    rows = read_length_table(tmp_path / "train-clean-100.csv")
    bad = tmp_path / "bad.flac"
    bad.write_bytes(b"not audio at all")
    write_length_table(rows + [(os.path.relpath(bad, root), 40000)], tmp_path / "train-clean-100.csv")
    expert = make_expert(tiny_librispeech, [{"name": "hubert", "upstream": "hubert_local", "ckpt": tiny_teachers["hubert"]}],
                         layers=(2, 4))
    expert.datarc = dict(expert.datarc, file_path=str(tmp_path), num_workers=1)
    records = None
    batches = list(expert.get_train_dataloader())
    assert any(b.audio_counts for b in batches)  # counted in the worker, carried by the batch
    for batch in batches:
        _, records = expert(batch, records, global_step=1)

    class Logger:
        scalars = {}

        def add_scalar(self, tag, value, global_step):
            self.scalars[tag] = (value, global_step)

    logger = Logger()
    expert.log_records(records=records, logger=logger, prefix="ekd/train-", global_step=1)
    assert logger.scalars["audio/skipped"] == (1, 1)
    assert logger.scalars["audio/skipped/unreadable"] == (1, 1)
