"""A padded batch through HuBERT's conv feature extractor in one call, each utterance exact.

HuBERT Base's first conv layer (``extractor_mode: default``) ends in a group norm with one
group per channel: each channel is normalised over the whole time axis. In a padded batch the
padding joins those statistics, so a shorter utterance gets other features than it has alone.
:func:`masked_group_norm` normalises each utterance over its own valid frames only; the other
conv layers never mix frames beyond their kernel, and a valid output frame only reads valid
input frames, so every valid frame of the batch equals the utterance's frame alone.

:class:`MaskedConvFeatureExtractor` is s3prl's ``ConvFeatureExtractionModel`` (same modules,
same state-dict keys) whose ``forward`` also takes the waveform lengths. The SUPERB export's
``expert.py`` (which must stand alone) holds the same computation.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from s3prl.upstream.wav2vec2.wav2vec2_model import ConvFeatureExtractionModel


def valid_mask(frames: torch.Tensor, total: int) -> torch.Tensor:
    """B x T, True on the first ``frames[b]`` frames of each row."""
    return torch.arange(total, device=frames.device)[None, :] < frames[:, None]


def masked_group_norm(x: torch.Tensor, frames: torch.Tensor, norm: nn.GroupNorm) -> torch.Tensor:
    """``norm`` (a GroupNorm over B x C x T) with each row's statistics taken over its first
    ``frames[b]`` frames alone; padded frames come out as 0. Computed in fp32, as s3prl's
    ``Fp32GroupNorm``, and returned in ``x``'s dtype."""
    b, c, t = x.shape
    groups = norm.num_groups
    keep = valid_mask(frames, t)[:, None, None, :]  # B x 1 x 1 x T
    xf = x.float().reshape(b, groups, c // groups, t)
    count = (frames.clamp(min=1) * (c // groups)).to(xf.dtype)[:, None, None, None]
    mean = xf.masked_fill(~keep, 0.0).sum((2, 3), keepdim=True) / count
    centred = (xf - mean).masked_fill(~keep, 0.0)
    var = centred.pow(2).sum((2, 3), keepdim=True) / count  # biased, as GroupNorm
    y = (centred * torch.rsqrt(var + norm.eps)).reshape(b, c, t)
    if norm.affine:
        y = y * norm.weight.float()[None, :, None] + norm.bias.float()[None, :, None]
        y = y.masked_fill(~keep.reshape(b, 1, t), 0.0)
    return y.to(x.dtype)


class MaskedConvFeatureExtractor(ConvFeatureExtractionModel):
    """s3prl's conv feature extractor; given ``lengths``, its group norms see each utterance's
    own samples only, so one call on a padded batch gives every utterance its features alone."""

    def forward(self, x: torch.Tensor, lengths: Optional[torch.Tensor] = None) -> torch.Tensor:
        """B x L waveforms (and their valid lengths) -> B x C x T features."""
        if lengths is None:
            return super().forward(x)
        frames = lengths.to(device=x.device, dtype=torch.long)
        x = x.unsqueeze(1)
        for block in self.conv_layers:
            for module in block:
                if isinstance(module, nn.GroupNorm):
                    x = masked_group_norm(x, frames, module)
                else:
                    x = module(x)
                if isinstance(module, nn.Conv1d):
                    kernel, stride = module.kernel_size[0], module.stride[0]
                    frames = (torch.div(frames - kernel, stride, rounding_mode="floor") + 1).clamp(min=0)
        return x
