"""Shared fixtures: tiny students whose conv strides still multiply to 320, as s3prl expects."""

import os
import sys

import pytest
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
    "conv_pos_groups": 4,
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


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def tiny_teachers(tmp_path_factory):
    """Tiny random teachers in the real formats (4 layers, 32 dims): name -> checkpoint path.

    ``hubert``, ``hubert2``, ``hubert_preln`` (s3prl's converted HuBERT format, ``hubert_local``),
    ``wavlm`` (WavLM's format, ``wavlm_local``), ``hubert_wide`` (48 dims), ``hubert_160``
    (160 samples a frame). See ``s3prl_ekd.tiny_teachers``.
    """
    from s3prl_ekd.tiny_teachers import write_tiny_teachers

    return {k: str(v) for k, v in write_tiny_teachers(tmp_path_factory.mktemp("teachers")).items()}
