"""Random-weight teachers of HuBERT / WavLM Base architecture, built from s3prl's own model classes.

Throughput depends on the architecture, not on the weights, so the benchmark needs no checkpoint.
``s3prl_upstream`` wraps such a model in s3prl's own ``UpstreamExpert`` (hooks and all), exactly
what s3prl's distiller pretrain expert calls.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Dict
from unittest import mock

import torch
from torch import nn

ARCHS = ("hubert", "wavlm")


@dataclass(frozen=True)
class TeacherSize:
    """Transformer and conv sizes of a teacher (defaults: HuBERT / WavLM Base)."""

    layers: int = 12
    dim: int = 768
    ffn: int = 3072
    heads: int = 12
    conv_dim: int = 512
    conv_pos: int = 128
    conv_pos_groups: int = 16

    def conv_layers(self) -> str:
        """The fairseq conv stack string: Base's kernels and strides (320 samples a frame)."""
        c = self.conv_dim
        return f"[({c},10,5)] + [({c},3,2)] * 4 + [({c},2,2)] * 2"


def random_teacher(arch: str, size: TeacherSize = TeacherSize(), seed: int = 0) -> nn.Module:
    """An s3prl ``HubertModel`` or ``WavLM`` of the given size with random weights, frozen, eval mode."""
    torch.manual_seed(seed)
    common = dict(
        encoder_layers=size.layers,
        encoder_embed_dim=size.dim,
        encoder_ffn_embed_dim=size.ffn,
        encoder_attention_heads=size.heads,
        conv_feature_layers=size.conv_layers(),
        conv_pos=size.conv_pos,
        conv_pos_groups=size.conv_pos_groups,
        extractor_mode="default",  # Base: one group norm over time in the first conv block
        layer_norm_first=False,
        encoder_layerdrop=0.0,
    )
    if arch == "hubert":
        from s3prl.upstream.hubert.hubert_model import HubertConfig, HubertModel, HubertPretrainingConfig

        model = HubertModel(HubertConfig(label_rate=50, **common), HubertPretrainingConfig(), [None])
    elif arch == "wavlm":
        from s3prl.upstream.wavlm.WavLM import WavLM, WavLMConfig

        # WavLM Base: gated relative position bias, 320 buckets, max distance 800
        model = WavLM(
            WavLMConfig(
                dict(common, relative_position_embedding=True, gru_rel_pos=True, num_buckets=320, max_distance=800)
            )
        )
    else:
        raise ValueError(f"unknown teacher architecture {arch!r}: choose one of {', '.join(ARCHS)}")
    model.feature_grad_mult = 0.0
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval()


def s3prl_upstream(model: nn.Module) -> nn.Module:
    """Wrap a model from :func:`random_teacher` in s3prl's own ``UpstreamExpert`` (no file needed)."""
    from s3prl.upstream.hubert import expert as hubert_expert
    from s3prl.upstream.hubert.hubert_model import HubertModel, HubertPretrainingConfig
    from s3prl.upstream.wavlm import expert as wavlm_expert

    if isinstance(model, HubertModel):
        # the expert reads (model, task config) from a converted checkpoint: hand it ours instead
        with mock.patch.object(hubert_expert, "load_converted_model", return_value=(model, HubertPretrainingConfig())):
            up = hubert_expert.UpstreamExpert(ckpt="random-weights")
    else:
        state = {"cfg": vars(model.cfg), "model": model.state_dict()}
        fake_torch = SimpleNamespace(load=lambda *a, **k: state)
        with mock.patch.object(wavlm_expert, "torch", fake_torch):
            up = wavlm_expert.UpstreamExpert(ckpt="random-weights")
    for p in up.parameters():
        p.requires_grad_(False)
    return up.eval()


def teacher_dims(names: Dict[str, str], size: TeacherSize) -> Dict[str, int]:
    """Hidden size of every named teacher (all share one size in the benchmark)."""
    return {n: size.dim for n in names}
