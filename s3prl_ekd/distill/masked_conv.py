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

import contextlib
from typing import Iterator, Optional

import torch
import torch.nn.functional as F
from s3prl.upstream.wav2vec2.wav2vec2_model import ConvFeatureExtractionModel
from torch import nn


def valid_mask(frames: torch.Tensor, total: int) -> torch.Tensor:
    """B x T, True on the first ``frames[b]`` frames of each row."""
    return torch.arange(total, device=frames.device)[None, :] < frames[:, None]


def masked_group_norm(x: torch.Tensor, frames: torch.Tensor, norm: nn.GroupNorm) -> torch.Tensor:
    """``norm`` (a GroupNorm over B x C x T) with each row's statistics taken over its first
    ``frames[b]`` frames alone. Computed in fp32, as s3prl's ``Fp32GroupNorm``, and returned in
    ``x``'s dtype; padded frames are zeros, which no valid frame of a later layer reads.

    torch's own fused ``group_norm`` runs on each row's valid frames (one call for the batch when
    no row is padded): as fast as the unmasked norm, forward and backward, where masking the
    statistics with element-wise ops cost two to three times as much."""
    t = x.shape[-1]
    weight = norm.weight.float() if norm.affine else None
    bias = norm.bias.float() if norm.affine else None

    def normed(rows: torch.Tensor) -> torch.Tensor:
        return F.group_norm(rows.float(), norm.num_groups, weight, bias, norm.eps)

    counts = frames.tolist()
    if all(n == t for n in counts):
        return normed(x).to(x.dtype)
    rows = []
    for i, n in enumerate(counts):
        n = max(n, 1)
        rows.append(F.pad(normed(x[i : i + 1, :, :n]), (0, t - n)))
    return torch.cat(rows).to(x.dtype)


def masked_conv_forward(extractor: nn.Module, wavs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """B x L padded waveforms -> B x C x T features through ``extractor.conv_layers`` (s3prl's and
    fairseq's layout: one ``nn.Sequential`` per conv layer), group norms over each row's own frames."""
    frames = lengths.to(dtype=torch.long)  # group-norm row lengths: read on the host, no device sync when given there
    x = wavs.unsqueeze(1)
    for block in extractor.conv_layers:
        for module in block:
            x = masked_group_norm(x, frames, module) if isinstance(module, nn.GroupNorm) else module(x)
            if isinstance(module, nn.Conv1d):
                frames = conv_layer_frames(module, frames)
    return x


def supports_masking(extractor: Optional[nn.Module]) -> bool:
    """Whether ``extractor`` is a 1-D conv stack :func:`masked_conv_forward` can run (HuBERT's,
    wav2vec 2.0's, WavLM's default ``conv_type``)."""
    layers = getattr(extractor, "conv_layers", None)
    return (
        isinstance(layers, nn.ModuleList)
        and getattr(extractor, "conv_type", "default") == "default"
        and all(isinstance(b, nn.Sequential) and isinstance(b[0], nn.Conv1d) for b in layers)
    )


def conv_layer_frames(conv: nn.Conv1d, frames: torch.Tensor) -> torch.Tensor:
    """Output frames of one unpadded conv layer for each input length (0 when too short)."""
    return (torch.div(frames - conv.kernel_size[0], conv.stride[0], rounding_mode="floor") + 1).clamp(min=0)


def conv_frames(extractor: nn.Module, lengths: torch.Tensor) -> torch.Tensor:
    """Frames ``extractor``'s conv stack gives for each waveform length."""
    frames = lengths.long()
    for block in extractor.conv_layers:
        frames = conv_layer_frames(block[0], frames)
    return frames


@contextlib.contextmanager
def exact_lengths(model: nn.Module, lengths: torch.Tensor) -> Iterator[None]:
    """Inside, ``model`` (HuBERT / WavLM as s3prl builds them, files unedited) treats a padded
    batch exactly: its ``feature_extractor`` normalises each row over its own ``lengths`` samples,
    and its ``forward_padding_mask`` marks each row's frames past its own conv frame count (its
    own rule splits the padded samples evenly over the frames and may keep a frame more)."""
    extractor = model.feature_extractor
    frames = conv_frames(extractor, lengths)
    extractor.forward = lambda x, *args, **kwargs: masked_conv_forward(extractor, x, lengths)
    patched_mask = hasattr(model, "forward_padding_mask")
    if patched_mask:
        model.forward_padding_mask = lambda features, padding_mask: valid_mask(frames, features.shape[1]).logical_not()
    try:
        yield
    finally:
        del extractor.forward
        if patched_mask:
            del model.forward_padding_mask


class MaskedConvFeatureExtractor(ConvFeatureExtractionModel):
    """s3prl's conv feature extractor; given ``lengths``, its group norms see each utterance's
    own samples only, so one call on a padded batch gives every utterance its features alone."""

    def forward(self, x: torch.Tensor, lengths: Optional[torch.Tensor] = None) -> torch.Tensor:
        """B x L waveforms (and their valid lengths) -> B x C x T features."""
        if lengths is None:
            return super().forward(x)
        return masked_conv_forward(self, x, lengths)
