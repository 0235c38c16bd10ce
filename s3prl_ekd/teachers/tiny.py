"""Tiny randomly initialised teachers, written in the real checkpoint formats s3prl loads.

They stand in for HuBERT / WavLM in tests and the demo: the same files, the same loaders
(``s3prl.hub.hubert_local`` / ``wavlm_local``), just a few layers of 32 dims, CPU-fast. Nothing
is trained: the weights are the models' own random init under a seed.

- HuBERT in s3prl's converted format (``task_cfg``, ``model_cfg``, ``model_weight``,
  ``dictionaries_symbols``, as ``s3prl.upstream.hubert.convert`` writes it), built with s3prl's
  own ``hubert_model`` classes.
- WavLM in its own format (``{"cfg": dict, "model": state_dict}``), built with s3prl's ``WavLM``.
"""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path
from typing import Dict

import torch

from s3prl_ekd.config.layer_spec import check_eval_strings
from s3prl_ekd.io import SAMPLE_RATE
from s3prl_ekd.io.atomic import atomic_save

# DistilHuBERT's conv kernels and strides (320 samples a frame) at a tiny width.
TINY_CONV = "[(32,10,5)] + [(32,3,2)] * 4 + [(32,2,2)] * 2"
# The same with one stride-2 layer fewer: 160 samples a frame (a teacher of another frame rate).
TINY_CONV_160 = "[(32,10,5)] + [(32,3,2)] * 3 + [(32,2,2)] * 2"
# HuBERT's label dictionary as fairseq builds it: 4 special symbols, then the cluster ids.
SPECIAL_SYMBOLS = ["<s>", "<pad>", "</s>", "<unk>"]


def pos_conv_groups(dim: int, most: int = 16) -> int:
    """Groups of the positional convolution at width ``dim``: as many as HuBERT Base's 16 while
    each keeps >= 16 channels. oneDNN's AMX bf16 kernel is wrong for grouped convolutions with
    fewer channels a group (8 gave a frame cosine of -0.39 against fp32; see autocast_check.py)."""
    return max(g for g in range(1, max(1, min(most, dim // 16)) + 1) if dim % g == 0)


def _tiny_encoder(layers: int, dim: int, conv: str, layer_norm_first: bool, **overrides) -> dict:
    # overrides: any other HubertConfig / WavLMConfig key (the benchmark writes Base sizes this way)
    cfg = dict(
        conv_feature_layers=conv,
        encoder_layers=layers,
        encoder_embed_dim=dim,
        encoder_ffn_embed_dim=2 * dim,
        encoder_attention_heads=4,
        conv_pos=16,
        conv_pos_groups=pos_conv_groups(dim),
        layer_norm_first=layer_norm_first,
        # s3prl's experts switch layerdrop off; a non-zero value here proves they (and we) do
        encoder_layerdrop=0.05,
    ) | overrides
    check_eval_strings(cfg)  # s3prl's model builders eval() the layer lists: grammar first
    return cfg


def tiny_hubert_state(
    layers: int = 4,
    dim: int = 32,
    seed: int = 0,
    conv: str = TINY_CONV,
    layer_norm_first: bool = False,
    n_clusters: int = 10,
    **overrides,
) -> dict:
    """A random tiny HuBERT in s3prl's converted checkpoint format (plain dicts and tensors)."""
    from s3prl.upstream.hubert.hubert_model import HubertConfig, HubertModel, HubertPretrainingConfig

    task_cfg = HubertPretrainingConfig(label_rate=50.0, sample_rate=SAMPLE_RATE, normalize=False)
    model_cfg = HubertConfig(label_rate=50.0, final_dim=16, **_tiny_encoder(layers, dim, conv, layer_norm_first, **overrides))
    symbols = [SPECIAL_SYMBOLS + [str(i) for i in range(n_clusters)]]
    torch.manual_seed(seed)
    model = HubertModel(model_cfg, task_cfg, symbols)
    return {
        "task_cfg": _plain(asdict(task_cfg)),
        "model_cfg": _plain(asdict(model_cfg)),
        "model_weight": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "dictionaries_symbols": symbols,
    }


def tiny_wavlm_state(
    layers: int = 4,
    dim: int = 32,
    seed: int = 0,
    conv: str = TINY_CONV,
    layer_norm_first: bool = False,
    **overrides,
) -> dict:
    """A random tiny WavLM in WavLM's own checkpoint format ``{"cfg": dict, "model": state_dict}``."""
    from s3prl.upstream.wavlm.WavLM import WavLM, WavLMConfig

    cfg = WavLMConfig(
        dict(
            _tiny_encoder(layers, dim, conv, layer_norm_first, **overrides),
            relative_position_embedding=True,  # WavLM Base+: gated relative position bias
            num_buckets=320,
            max_distance=800,
            gru_rel_pos=True,
            normalize=False,
        )
    )
    torch.manual_seed(seed)
    model = WavLM(cfg)
    return {"cfg": _plain(dict(cfg.__dict__)), "model": {k: v.detach().clone() for k, v in model.state_dict().items()}}


def write_tiny_hubert(path: os.PathLike | str, **kwargs) -> Path:
    """Write a tiny HuBERT (s3prl's converted format) to ``path``; loads with ``hubert_local``."""
    return atomic_save(tiny_hubert_state(**kwargs), path)


def write_tiny_wavlm(path: os.PathLike | str, **kwargs) -> Path:
    """Write a tiny WavLM (its own format) to ``path``; loads with ``wavlm_local``."""
    return atomic_save(tiny_wavlm_state(**kwargs), path)


def write_tiny_teachers(folder: os.PathLike | str, layers: int = 4, seed: int = 0) -> Dict[str, Path]:
    """The standard set of tiny teachers for tests and the demo: name -> checkpoint path.

    ``hubert`` and ``hubert2`` (two HuBERTs, different seeds), ``hubert_preln`` (pre-LN, as
    HuBERT Large), ``wavlm``, ``hubert_wide`` (48 dims) and ``hubert_160`` (160 samples a frame).
    """
    folder = Path(folder)
    return {
        "hubert": write_tiny_hubert(folder / "tiny_hubert.pt", layers=layers, seed=seed),
        "hubert2": write_tiny_hubert(folder / "tiny_hubert2.pt", layers=layers, seed=seed + 1),
        "hubert_preln": write_tiny_hubert(
            folder / "tiny_hubert_preln.pt", layers=layers, seed=seed + 2, layer_norm_first=True
        ),
        "wavlm": write_tiny_wavlm(folder / "tiny_wavlm.pt", layers=layers, seed=seed + 3),
        "hubert_wide": write_tiny_hubert(folder / "tiny_hubert_wide.pt", layers=layers, dim=48, seed=seed + 4),
        "hubert_160": write_tiny_hubert(folder / "tiny_hubert_160.pt", layers=layers, seed=seed + 5, conv=TINY_CONV_160),
    }


def _plain(value):
    """Configs as plain Python data (tuples to lists, enums to str) so ``weights_only`` loads them."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)
