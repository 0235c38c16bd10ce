"""The DistilHuBERT-style student, assembled from s3prl's own distiller building blocks.

Module names follow s3prl's ``DistillerModel`` (``feature_extractor``, ``post_extract_proj``,
``encoder``), so the body's weights are s3prl distiller weights. The prediction heads are built
from a :class:`~s3prl_ekd.distill.targets.TargetPlan`: one s3prl ``expand-last`` block
(``Linear(D, N*D_inter) -> GELU -> SplitLinear(N heads)``) per head group of the plan.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Literal, Mapping, Optional, Sequence

import torch
from s3prl.upstream.distiller.model import DistillerConfig
from s3prl.upstream.distiller.module import GradMultiply, SplitLinear, TransformerEncoder
from torch import nn
from torch.nn.utils.rnn import pad_sequence

from s3prl_ekd.config.layer_spec import LayerSpecError, parse_layer_spec
from s3prl_ekd.config.reader import from_mapping, setting, to_dict
from s3prl_ekd.config.values import MAX_DIM, ConfigValueError, integer
from s3prl_ekd.distill.masked_conv import MaskedConvFeatureExtractor, conv_frames, valid_mask
from s3prl_ekd.distill.targets import TargetPlan
from s3prl_ekd.io import SAMPLE_RATE


class StudentConfigError(ConfigValueError):
    """A student config with an unknown key or an impossible value."""


# s3prl's get_activation_fn (wav2vec2_model.py) names, less "swish" (it returns a class there)
Activation = Literal["relu", "relu_squared", "gelu", "gelu_fast", "gelu_accurate", "tanh", "linear"]
UNIT = {"low": 0.0, "high": 1.0}  # a probability


@dataclass(frozen=True)
class StudentConfig:
    """The student's body: s3prl distiller keys, defaults DistilHuBERT's (Chang et al. 2022) as
    s3prl's pretrain/distiller/config_model.yaml sets them."""

    extractor_mode: Literal["default", "layer_norm"] = "default"  # HuBERT Base's group-norm conv extractor
    extractor_conv_feature_layers: str = "[(512,10,5)] + [(512,3,2)] * 4 + [(512,2,2)] * 2"
    extractor_dropout: float = setting(0.0, **UNIT)
    feature_grad_mult: float = setting(0.1, low=0.0)
    conv_pos: int = setting(128, low=1, high=MAX_DIM)
    conv_pos_groups: int = setting(16, low=1, high=MAX_DIM)
    encoder_layers: int = setting(2, low=1, high=256)
    encoder_embed_dim: int = setting(768, low=1, high=MAX_DIM)
    encoder_ffn_embed_dim: int = setting(3072, low=1, high=MAX_DIM)
    encoder_attention_heads: int = setting(12, low=1, high=MAX_DIM)
    activation_fn: Activation = "gelu"
    layer_norm_first: bool = False  # post-LN, as HuBERT Base
    # s3prl's "sparse" / "dynamic" need fairseq, which we never import
    attention_type: Literal["original"] = "original"
    dropout: float = setting(0.1, **UNIT)
    attention_dropout: float = setting(0.1, **UNIT)
    activation_dropout: float = setting(0.1, **UNIT)
    encoder_layerdrop: float = setting(0.0, **UNIT)
    out_layer_inter_dim: int = setting(-1, low=-1, high=MAX_DIM)  # -1: the encoder dim, as s3prl
    # The conv extractor's group norm spans the time axis: normalise each utterance over its own
    # frames (one call on the padded batch, each utterance's features as alone). False: the
    # padding joins the statistics, as s3prl's distiller does.
    exact_padding: bool = True

    def __post_init__(self):
        layers = parse_conv_layers(self.extractor_conv_feature_layers)
        if not layers:
            raise StudentConfigError("`student.extractor_conv_feature_layers` is empty")
        for i, layer in enumerate(layers):
            for part, v in zip(("dim", "kernel", "stride"), layer):
                integer(v, f"student.extractor_conv_feature_layers[{i}].{part}")
        if self.out_layer_inter_dim == 0:
            raise StudentConfigError("`student.out_layer_inter_dim` must be -1 (the encoder dim) or a dim >= 1, got 0")
        d = self.encoder_embed_dim
        for key in ("encoder_attention_heads", "conv_pos_groups"):
            if d % getattr(self, key):
                raise StudentConfigError(
                    f"`student.encoder_embed_dim` ({d}) must be divisible by `student.{key}` ({getattr(self, key)})"
                )


def make_student_config(overrides: Optional[Mapping] = None) -> Dict[str, object]:
    """Paper defaults updated by ``overrides`` as the plain dict s3prl and checkpoints hold;
    unknown keys and values out of range are errors naming the key."""
    return to_dict(from_mapping(StudentConfig, overrides or {}, "student", StudentConfigError))


def parse_conv_layers(spec: str) -> List[tuple]:
    """Parse an ``extractor_conv_feature_layers`` string (which s3prl ``eval()``s) with the strict
    grammar of :mod:`layer_spec` into (dim, kernel, stride) tuples."""
    try:
        value = parse_layer_spec(spec, "extractor_conv_feature_layers")
    except LayerSpecError as e:
        raise StudentConfigError(str(e)) from None
    if not all(isinstance(layer, tuple) and len(layer) == 3 for layer in value):
        raise StudentConfigError(
            f"extractor_conv_feature_layers {spec!r} is not a list of (dim, kernel, stride) tuples"
        )
    return list(value)


def conv_layers(cfg: Mapping) -> List[tuple]:
    """The (dim, kernel, stride) tuples of a student config's ``extractor_conv_feature_layers``."""
    return parse_conv_layers(cfg["extractor_conv_feature_layers"])


@dataclass
class StudentOutput:
    """What the student computes for a batch."""

    hidden_states: List[torch.Tensor]  # [projected extractor output, layer 1, ..., layer L], B x T x D
    frame_lengths: torch.Tensor  # valid frames per utterance (B,)
    predictions: Optional[List[torch.Tensor]]  # one per plan target, B x T x D_target

    @property
    def padding_mask(self) -> torch.Tensor:
        """B x T, True on padded frames."""
        t = self.hidden_states[0].shape[1]
        return ~valid_mask(self.frame_lengths, t)


class PredictionHeads(nn.Module):
    """One s3prl ``expand-last`` block per head group of the plan, in plan order."""

    def __init__(self, plan: TargetPlan, in_dim: int, inter_dim: int):
        super().__init__()
        self.groups = plan.groups()
        self.n_targets = len(plan)
        blocks = []
        for group, idx in self.groups.items():
            dims = {plan.targets[i].dim for i in idx}
            if len(dims) != 1:
                raise StudentConfigError(
                    f"head group {group!r} mixes target dims {sorted(dims)}: give each dim its own group"
                )
            blocks.append(
                nn.Sequential(
                    nn.Linear(in_dim, inter_dim * len(idx)),
                    nn.GELU(),
                    SplitLinear(inter_dim, len(idx), dims.pop()),
                )
            )
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        b, t, _ = x.shape
        out: List[Optional[torch.Tensor]] = [None] * self.n_targets
        for block, idx in zip(self.blocks, self.groups.values()):
            y = block(x).reshape(b, t, len(idx), -1)
            for j, i in enumerate(idx):
                out[i] = y[:, :, j]
        return out  # type: ignore[return-value]


class EKDStudent(nn.Module):
    """DistilHuBERT body (conv extractor, projection, transformer) plus plan-built heads."""

    def __init__(self, config: Mapping, plan: TargetPlan):
        super().__init__()
        self.config = make_student_config(config)
        self.plan = plan
        self.conv_layers = conv_layers(self.config)
        dcfg = DistillerConfig(dict(self.config))
        feat_dim = self.conv_layers[-1][0]
        self.feature_extractor = MaskedConvFeatureExtractor(
            self.conv_layers, dropout=dcfg.extractor_dropout, mode=dcfg.extractor_mode, conv_bias=False
        )
        self.feature_grad_mult = dcfg.feature_grad_mult
        if self.feature_grad_mult == 0:
            # never trained (its forward runs under no_grad): frozen, so optimizers and
            # DistributedDataParallel do not wait for gradients it never gets
            self.feature_extractor.requires_grad_(False)
        dim = dcfg.encoder_embed_dim
        self.post_extract_proj = nn.Linear(feat_dim, dim) if feat_dim != dim else None
        self.encoder = TransformerEncoder(dcfg)
        inter = dcfg.out_layer_inter_dim if dcfg.out_layer_inter_dim > 0 else dim
        self.heads = PredictionHeads(plan, dim, inter) if len(plan) else None

    # ----- shapes ---------------------------------------------------------------------------
    @property
    def downsample_rate(self) -> int:
        """Samples per output frame: the product of the conv strides (320 for DistilHuBERT)."""
        rate = 1
        for _, _, stride in self.conv_layers:
            rate *= stride
        return rate

    @property
    def receptive_field(self) -> int:
        """Samples the conv stack needs for one frame (400 for DistilHuBERT)."""
        rf = 1
        for _, kernel, stride in reversed(self.conv_layers):
            rf = (rf - 1) * stride + kernel
        return rf

    def frame_lengths(self, wav_lengths: torch.Tensor) -> torch.Tensor:
        """Frames the conv stack gives for each waveform length (as s3prl's ``cal_pad_mask``)."""
        return conv_frames(self.feature_extractor, wav_lengths)

    def num_parameters(self, with_heads: bool = False) -> int:
        """Parameter count; without heads by default, as DistilHuBERT reports (23.49 M)."""
        return sum(
            p.numel() for n, p in self.named_parameters() if with_heads or not n.startswith("heads.")
        )

    # ----- forward --------------------------------------------------------------------------
    def extract_features(self, wavs: torch.Tensor, wav_lengths: torch.Tensor) -> torch.Tensor:
        """Conv features (B x T x C) of a padded batch in one call; each utterance as if alone
        when ``exact_padding`` (see :mod:`s3prl_ekd.distill.masked_conv`)."""
        if self.config["exact_padding"]:
            feats = self.feature_extractor(wavs, wav_lengths)
        else:
            feats = self.feature_extractor(wavs)
        return feats.transpose(1, 2)

    def check_lengths(self, wav_lengths: torch.Tensor) -> None:
        """A clear error for utterances shorter than the receptive field (reads ``wav_lengths``
        on the host: pass lengths on the CPU to keep the forward free of a device sync)."""
        short = (wav_lengths < self.receptive_field).nonzero().flatten().tolist()
        if short:
            raise ValueError(
                f"utterance(s) {short} are shorter than the student's receptive field of "
                f"{self.receptive_field} samples ({self.receptive_field / SAMPLE_RATE * 1000:.0f} ms at 16 kHz): "
                "drop or pad them before the forward"
            )

    def forward(
        self,
        wavs: Sequence[torch.Tensor] | torch.Tensor,
        wav_lengths: Optional[torch.Tensor] = None,
        with_heads: bool = True,
    ) -> StudentOutput:
        """Run on a list of 1-D waveforms, or a padded B x L batch with its lengths (best on the
        CPU: they are checked there and copied to the device without waiting)."""
        if isinstance(wavs, torch.Tensor) and wavs.dim() == 2:
            if wav_lengths is None:
                wav_lengths = torch.full((wavs.shape[0],), wavs.shape[1])
            batch = wavs
        else:
            wav_lengths = torch.tensor([len(w) for w in wavs])
            batch = pad_sequence(list(wavs), batch_first=True)
        batch = batch.float()
        self.check_lengths(wav_lengths)
        wav_lengths = wav_lengths.to(batch.device, non_blocking=True)

        if self.feature_grad_mult > 0:
            feat = self.extract_features(batch, wav_lengths)
            if self.feature_grad_mult != 1.0 and feat.requires_grad:
                feat = GradMultiply.apply(feat, self.feature_grad_mult)
        else:
            with torch.no_grad():
                feat = self.extract_features(batch, wav_lengths)

        frames = self.frame_lengths(wav_lengths)
        frames = frames.clamp(max=feat.shape[1])
        pad = torch.arange(feat.shape[1], device=feat.device)[None, :] >= frames[:, None]
        x = self.post_extract_proj(feat) if self.post_extract_proj is not None else feat
        x = x.masked_fill(pad[..., None], 0.0)
        # the mask always goes in (an all-False mask changes nothing): testing it would wait on the device
        last, layers = self.encoder(x, padding_mask=pad, get_hidden=True)
        hidden = [x] + list(layers)
        preds = self.heads(last) if (with_heads and self.heads is not None) else None
        return StudentOutput(hidden_states=hidden, frame_lengths=frames, predictions=preds)


def count_parameters(module: nn.Module) -> int:
    """Number of parameters of a module."""
    return sum(p.numel() for p in module.parameters())
