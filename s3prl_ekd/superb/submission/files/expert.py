"""SUPERB hidden-set upstream: an ensemble-distilled DistilHuBERT-style student (s3prl-ekd export).

Self-contained: needs torch and s3prl (see requirements.txt), whose distiller building blocks
define the model. ``model.pt`` is plain data (``torch.load(weights_only=True)``)::

    {"format": "s3prl-ekd/superb-submission", "format_version": 1,
     "conv_layers": [[dim, kernel, stride], ...], "config": {s3prl distiller keys},
     "exact_padding": bool, "heads": None | {"groups": [[target index, ...], ...],
     "dims": [dim per group], "inter_dim": int}, "state_dict": {...}, "info": {...}}

    upstream = UpstreamExpert(ckpt="./model.pt")
    out = upstream([wav1, wav2])      # 16 kHz 1-D float tensors
    out["hidden_states"]              # [projected CNN features, layer 1, layer 2, (heads)], B x T x D
"""

from __future__ import annotations

import os
from typing import Dict, List, Optional

import torch
import torch.nn.functional as F
from s3prl.upstream.distiller.model import DistillerConfig
from s3prl.upstream.distiller.module import ConvFeatureExtractionModel, SplitLinear, TransformerEncoder
from torch import nn
from torch.nn.utils.rnn import pad_sequence

FORMAT = "s3prl-ekd/superb-submission"
FORMAT_VERSION = 1


def _resolve(ckpt: str) -> str:
    """``ckpt`` as given, else relative to this folder (so hubconf / torch.hub find model.pt)."""
    if os.path.isfile(ckpt) or os.path.isabs(ckpt):
        return ckpt
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), ckpt)
    return here if os.path.isfile(here) else ckpt


def load_model_file(ckpt: str) -> dict:
    """Read model.pt safely (plain data only) and check it is this folder's format."""
    path = _resolve(ckpt)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{ckpt} does not exist: give the path of this folder's model.pt")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{path} is not an s3prl-ekd SUPERB submission model (no 'format': '{FORMAT}')")
    if int(state.get("format_version", 0)) > FORMAT_VERSION:
        raise ValueError(f"{path} has format version {state['format_version']}; this expert.py reads {FORMAT_VERSION}")
    return state


def _masked_group_norm(x: torch.Tensor, frames: torch.Tensor, norm: nn.GroupNorm) -> torch.Tensor:
    """``norm`` over B x C x T with each row's statistics over its first ``frames[b]`` frames
    (fp32, as s3prl's Fp32GroupNorm; torch's group_norm on each row's valid frames, padding
    zeros). Kept in this file, which must stand alone: the same computation as the trained
    student's masked group norm, so its features equal the student's exactly."""
    t = x.shape[-1]
    weight = norm.weight.float() if norm.affine else None
    bias = norm.bias.float() if norm.affine else None
    counts = frames.tolist()
    if all(n == t for n in counts):
        return F.group_norm(x.float(), norm.num_groups, weight, bias, norm.eps).to(x.dtype)
    rows = []
    for i, n in enumerate(counts):
        n = max(n, 1)
        row = F.group_norm(x[i : i + 1, :, :n].float(), norm.num_groups, weight, bias, norm.eps)
        rows.append(F.pad(row, (0, t - n)))
    return torch.cat(rows).to(x.dtype)


class Student(nn.Module):
    """DistilHuBERT body from s3prl's distiller blocks; module names as s3prl's DistillerModel."""

    def __init__(self, state: dict):
        super().__init__()
        cfg = DistillerConfig(state["config"])
        self.conv_layers = [tuple(int(v) for v in layer) for layer in state["conv_layers"]]
        self.exact_padding = bool(state["exact_padding"])
        self.feature_extractor = ConvFeatureExtractionModel(
            self.conv_layers, dropout=cfg.extractor_dropout, mode=cfg.extractor_mode, conv_bias=False
        )
        feat_dim, dim = self.conv_layers[-1][0], cfg.encoder_embed_dim
        self.post_extract_proj = nn.Linear(feat_dim, dim) if feat_dim != dim else None
        self.encoder = TransformerEncoder(cfg)
        self.heads = Heads(state["heads"], dim) if state.get("heads") else None

    @property
    def downsample_rate(self) -> int:
        rate = 1
        for _, _, stride in self.conv_layers:
            rate *= stride
        return rate

    def frame_lengths(self, wav_lengths: torch.Tensor) -> torch.Tensor:
        n = wav_lengths.long()
        for _, kernel, stride in self.conv_layers:
            n = torch.div(n - kernel, stride, rounding_mode="floor") + 1
        return n.clamp(min=0)

    def features(self, wavs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        # The group-norm conv extractor normalises over time, so padding would change the shorter
        # utterances' features: with exact_padding each utterance is normalised over its own
        # frames, in one call on the padded batch (the same computation as the trained student's).
        if not self.exact_padding:
            return self.feature_extractor(wavs).transpose(1, 2)
        x, frames = wavs.unsqueeze(1), lengths.long()
        for block in self.feature_extractor.conv_layers:
            for module in block:
                x = _masked_group_norm(x, frames, module) if isinstance(module, nn.GroupNorm) else module(x)
                if isinstance(module, nn.Conv1d):
                    kernel, stride = module.kernel_size[0], module.stride[0]
                    frames = (torch.div(frames - kernel, stride, rounding_mode="floor") + 1).clamp(min=0)
        return x.transpose(1, 2)

    @property
    def receptive_field(self) -> int:
        rf = 1
        for _, kernel, stride in reversed(self.conv_layers):
            rf = (rf - 1) * stride + kernel
        return rf

    def forward(self, wavs: List[torch.Tensor]):
        lengths = [len(w) for w in wavs]
        short = [i for i, n in enumerate(lengths) if n < self.receptive_field]
        if short:
            raise ValueError(
                f"utterance(s) {short} are shorter than the model's receptive field of "
                f"{self.receptive_field} samples: drop or pad them before the forward"
            )
        batch = pad_sequence(list(wavs), batch_first=True).float()
        wav_lengths = torch.tensor(lengths, device=batch.device)
        feat = self.features(batch, wav_lengths)
        frames = self.frame_lengths(wav_lengths).clamp(max=feat.shape[1])
        pad = torch.arange(feat.shape[1], device=feat.device)[None, :] >= frames[:, None]
        x = self.post_extract_proj(feat) if self.post_extract_proj is not None else feat
        x = x.masked_fill(pad[..., None], 0.0)
        last, layers = self.encoder(x, padding_mask=pad, get_hidden=True)
        return [x] + list(layers), last


class Heads(nn.Module):
    """Prediction heads kept for the hidden states: Linear -> GELU -> SplitLinear per group."""

    def __init__(self, spec: dict, dim: int):
        super().__init__()
        self.groups = [list(g) for g in spec["groups"]]
        inter = int(spec["inter_dim"])
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Linear(dim, inter * len(g)), nn.GELU(), SplitLinear(inter, len(g), int(d)))
            for g, d in zip(self.groups, spec["dims"])
        )

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        b, t, _ = x.shape
        outs = [block(x).reshape(b, t, len(g), -1) for block, g in zip(self.blocks, self.groups)]
        # several teachers' heads: average position by position across the groups
        return [torch.stack([y[:, :, j] for y in outs]).mean(0) for j in range(len(self.groups[0]))]


class UpstreamExpert(nn.Module):
    """The SUPERB upstream interface: ``forward(wavs) -> {"hidden_states": [...]}``."""

    def __init__(self, ckpt: str = "./model.pt", model_config: Optional[str] = None, **kwargs):
        super().__init__()
        state = load_model_file(ckpt)
        self.info = state.get("info", {})
        self.model = Student(state)
        self.model.load_state_dict(state["state_dict"])
        self.model.eval()

    def get_downsample_rates(self, key: str) -> int:
        return int(self.model.downsample_rate)

    def forward(self, wavs: List[torch.Tensor]) -> Dict[str, object]:
        hidden, last = self.model(wavs)
        if self.model.heads is not None:
            hidden = hidden + self.model.heads(last)
        return {"hidden_states": hidden, "last_hidden_state": hidden[-1]}
