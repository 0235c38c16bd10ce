"""Shared fixtures: tiny students whose conv strides still multiply to 320, as s3prl expects; tiny
teachers and corpora in the real formats (built once a session)."""

import os
import sys
from typing import Dict

import numpy as np
import pytest
import soundfile as sf
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

# A DistilHuBERT in miniature: same conv kernels/strides (320 samples a frame), small widths.
TINY_STUDENT = {
    "extractor_conv_feature_layers": "[(32,10,5)] + [(32,3,2)] * 4 + [(32,2,2)] * 2",
    "encoder_layers": 2,
    "encoder_embed_dim": 32,
    "encoder_ffn_embed_dim": 64,
    "encoder_attention_heads": 4,
    "conv_pos": 16,
    "conv_pos_groups": 2,  # 16 channels a group, as the tiny teachers (it can start from one)
}


@pytest.fixture
def tiny_student_config():
    return dict(TINY_STUDENT)


@pytest.fixture
def root_dir():
    return ROOT


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    """The built-in corpus at its ``tiny`` size (76 utterances, ~2 s to make), once a session.

    Returns :class:`s3prl_ekd.corpus.CorpusPaths`; treat it as read-only.
    """
    from s3prl_ekd.corpus import make_corpus

    return make_corpus(str(tmp_path_factory.mktemp("corpus") / "tiny"), size="tiny", seed=0,
                       workers=2, progress=lambda msg: None)


# 8 utterances of 0.5 to 2 s: with batch 2, four buckets an epoch
UTTERANCE_SECONDS = [0.5, 0.7, 0.9, 1.1, 1.3, 1.5, 1.8, 2.0]


@pytest.fixture(scope="session")
def tiny_librispeech(tmp_path_factory) -> Dict[str, str]:
    """A LibriSpeech-layout folder (speaker/chapter/*.flac + *.trans.txt) and its length tables."""
    root = tmp_path_factory.mktemp("LibriSpeech")
    rng = np.random.default_rng(0)
    for i, seconds in enumerate(UTTERANCE_SECONDS):
        spk, chap = 100 + i % 2, 7
        folder = root / "train-clean-100" / str(spk) / str(chap)
        folder.mkdir(parents=True, exist_ok=True)
        t = np.arange(int(seconds * 16000)) / 16000
        wav = 0.3 * np.sin(2 * np.pi * (150 + 40 * i) * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
        wav = (wav + 0.02 * rng.standard_normal(len(t))).astype(np.float32)
        uid = f"{spk}-{chap}-{i:04d}"
        sf.write(str(folder / f"{uid}.flac"), wav, 16000)
        with open(folder / f"{spk}-{chap}.trans.txt", "a") as f:
            f.write(f"{uid} A TINY UTTERANCE\n")
    tables = root.parent / "len_for_bucket"
    from s3prl_ekd.cli import main

    assert main(["prepare-lengths", str(root), "--output", str(tables)]) == 0
    return {"libri_root": str(root), "file_path": str(tables)}


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def tiny_teachers(tmp_path_factory):
    """Tiny random teachers in the real formats (4 layers, 32 dims): name -> checkpoint path.

    ``hubert``, ``hubert2``, ``hubert_preln`` (s3prl's converted HuBERT format, ``hubert_local``),
    ``wavlm`` (WavLM's format, ``wavlm_local``), ``hubert_wide`` (48 dims), ``hubert_160``
    (160 samples a frame). See ``s3prl_ekd.teachers.tiny``.
    """
    from s3prl_ekd.teachers.tiny import write_tiny_teachers

    return {k: str(v) for k, v in write_tiny_teachers(tmp_path_factory.mktemp("teachers")).items()}


@pytest.fixture(scope="session")
def fairseq_hubert(tmp_path_factory):
    """A tiny HuBERT built and saved by REAL fairseq, as its trainer does, in three vintages.

    ``cfg``: fairseq 0.12 (``cfg`` a plain dict, enums as str); ``dictconfig``: ``cfg`` a pickled
    omegaconf DictConfig (older fairseq); ``args``: an ``argparse.Namespace`` (pre-hydra runs).
    Returns {"paths": {vintage: path}, "model": the fairseq model (eval)}. Needs the fairseq extra.
    """
    import argparse

    fairseq = pytest.importorskip("fairseq")
    from fairseq.data.dictionary import Dictionary
    from fairseq.models.hubert import HubertConfig, HubertModel
    from fairseq.tasks.hubert_pretraining import HubertPretrainingConfig
    from omegaconf import OmegaConf

    folder = tmp_path_factory.mktemp("fairseq")
    labels = Dictionary()
    for i in range(10):
        labels.add_symbol(str(i))
    task_cfg = HubertPretrainingConfig(
        _name="hubert_pretraining", data=str(folder), labels=["km"], label_rate=50.0, sample_rate=16000
    )
    model_cfg = HubertConfig(
        _name="hubert",
        label_rate=50.0,
        conv_feature_layers=TINY_STUDENT["extractor_conv_feature_layers"],
        encoder_layers=3,
        encoder_embed_dim=32,
        encoder_ffn_embed_dim=64,
        encoder_attention_heads=4,
        conv_pos=16,
        conv_pos_groups=4,
        final_dim=16,
        encoder_layerdrop=0.05,
    )
    torch.manual_seed(0)
    model = HubertModel(model_cfg, task_cfg, [labels]).eval()
    cfg = {
        "_name": None,
        "common": {"fp16": False, "seed": 1},
        "model": OmegaConf.structured(model_cfg),
        "task": OmegaConf.structured(task_cfg),
        "criterion": {"_name": "hubert", "pred_masked_weight": 1.0},
    }
    # what fairseq's trainer writes (a live DictConfig cannot be pickled: its enums)
    plain = OmegaConf.to_container(OmegaConf.create(cfg), enum_to_str=True)
    state = {
        "args": None,
        "cfg": plain,
        "model": model.state_dict(),
        "criterion": None,
        "optimizer_history": [
            {
                "criterion_name": "HubertCriterion",
                "optimizer_name": "FairseqAdam",
                "lr_scheduler_state": {"best": 3.5},
                "num_updates": 10,
            }
        ],
        "task_state": {"dictionaries": [labels]},
        "extra_state": {"epoch": 1, "previous_training_time": 1.5},
        "last_optimizer_state": None,
    }
    paths = {"cfg": folder / "hubert_cfg.pt", "dictconfig": folder / "hubert_dictconfig.pt", "args": folder / "hubert_args.pt"}
    torch.save(state, paths["cfg"])
    torch.save({**state, "cfg": OmegaConf.create(plain)}, paths["dictconfig"])
    args = argparse.Namespace(**{**plain["task"], **plain["model"]})
    args.task, args.arch, args.criterion = "hubert_pretraining", "hubert", "hubert"
    old = {k: v for k, v in state.items() if k != "cfg"}
    torch.save({**old, "args": args}, paths["args"])
    return {"paths": {k: str(v) for k, v in paths.items()}, "model": model}
