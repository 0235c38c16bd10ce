"""Give the demo's tiny teachers something to teach: brief supervised training on the corpus.

The teachers are s3prl's own model classes (``HubertModel``, ``WavLM``) at tiny sizes, built and
saved by :mod:`s3prl_ekd.teachers.tiny` in the formats ``hubert_local`` / ``wavlm_local`` read.
Here each is trained, through its own ``extract_features`` (the path s3prl's experts run), on a
different job so that they carry different knowledge:

- ``phones``: the phone of every frame, from the corpus's alignments (eSpeak NG's own phoneme
  timings), then optionally CTC on the phone sequence (what a content model such as HuBERT knows);
- ``speaker``: which speaker is talking, from the mean over frames (what WavLM adds with its
  utterance mixing: speaker and paralinguistic cues);
- either objective on **distorted** audio (noise, reverberation), as RobustHuBERT was trained.

The small task heads are thrown away; only the teacher's own weights are kept.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pad_sequence
from tqdm import tqdm

from s3prl_ekd.corpus.alignment import frame_labels
from s3prl_ekd.distill.masked_conv import valid_mask

OBJECTIVES = ("phones", "speaker")


class TeacherTrainingError(ValueError):
    """A teacher training setting that cannot be used."""


@dataclass
class LabelledUtterance:
    """One training utterance of the corpus with its labels."""

    wav: torch.Tensor  # 1-D float, 16 kHz
    phones: List[int]  # phone ids, 1-based (0 is the CTC blank)
    speaker: int  # speaker id, 0-based
    # (phone id, start, end sample) spans, 0 = silence; None: no alignment (spread `phones` evenly)
    segments: Optional[List[Tuple[int, int, int]]] = None


def aligned_frames(segments: Sequence[Tuple[int, int, int]], frames: int, hop: int = 320) -> torch.Tensor:
    """Frame labels from phone spans: the phone at each frame's centre (0 where none)."""
    return torch.tensor(frame_labels(segments, frames, hop, default=0), dtype=torch.long)


def _padding_mask(lengths: torch.Tensor) -> torch.Tensor:
    """B x L, True on padded samples (the convention of s3prl's HuBERT and WavLM)."""
    return ~valid_mask(lengths, int(lengths.max()))


def uniform_alignment(wav: torch.Tensor, phones: Sequence[int], frames: int, hop: int = 320) -> torch.Tensor:
    """Frame labels (0 = silence/blank) spreading ``phones`` evenly over the voiced span of ``wav``.

    The fallback where the corpus has no alignment (see :func:`aligned_frames`). A crude
    alignment, but dense: a CTC model trained from scratch sits for many epochs on the
    all-blank plateau, far beyond a CPU demo's budget; a few hundred steps of frame-wise
    cross-entropy on this alignment first get it past that, and CTC then refines the boundaries.
    """
    energy = wav[: frames * hop].float().reshape(-1)
    energy = F.pad(energy, (0, frames * hop - energy.numel())).reshape(frames, hop).pow(2).mean(1)
    voiced = (energy > 0.02 * energy.max()).nonzero().flatten()
    labels = torch.zeros(frames, dtype=torch.long)
    if len(voiced) == 0 or not phones:
        return labels
    start, end = int(voiced[0]), int(voiced[-1]) + 1
    edges = torch.linspace(start, end, len(phones) + 1).round().long()
    for p, a, b in zip(phones, edges[:-1].tolist(), edges[1:].tolist()):
        labels[a:max(b, a + 1)] = p
    return labels


class ObjectiveHead(nn.Module):
    """A throw-away head on the teacher's last layer: frame-wise CTC or utterance classification."""

    def __init__(self, objective: str, dim: int, n_labels: int):
        super().__init__()
        if objective not in OBJECTIVES:
            raise TeacherTrainingError(f"unknown teacher objective {objective!r}: choose one of {OBJECTIVES}")
        self.objective = objective
        # CTC reserves class 0 for the blank (the alignment warm-up uses it for silence)
        self.proj = nn.Linear(dim, n_labels + 1 if objective == "phones" else n_labels)

    def forward(
        self,
        feats: torch.Tensor,
        frame_pad: Optional[torch.Tensor],
        batch: Sequence[LabelledUtterance],
        aligned: bool = False,
    ) -> torch.Tensor:
        """The objective's loss for features B x T x D of ``batch`` (``aligned``: the CTC warm-up)."""
        b, t, _ = feats.shape
        valid = torch.ones(b, t, dtype=torch.bool) if frame_pad is None else ~frame_pad
        if self.objective == "speaker":
            pooled = (feats * valid[..., None]).sum(1) / valid.sum(1, keepdim=True).clamp(min=1)
            return F.cross_entropy(self.proj(pooled), torch.tensor([u.speaker for u in batch]))
        logits = self.proj(feats)
        if aligned:
            lengths = valid.sum(1).tolist()
            labels = torch.full((b, t), -100, dtype=torch.long)  # -100: padding, ignored
            for i, u in enumerate(batch):
                labels[i, : lengths[i]] = (aligned_frames(u.segments, lengths[i]) if u.segments is not None
                                           else uniform_alignment(u.wav, u.phones, lengths[i]))
            return F.cross_entropy(logits.reshape(b * t, -1), labels.reshape(-1), ignore_index=-100)
        log_probs = logits.log_softmax(-1).transpose(0, 1)  # T x B x C for ctc_loss
        targets = torch.tensor([p for u in batch for p in u.phones], dtype=torch.long)
        target_lengths = torch.tensor([len(u.phones) for u in batch])
        return F.ctc_loss(log_probs, targets, valid.sum(1), target_lengths, blank=0, zero_infinity=True)


def lr_at(step: int, total: int, peak: float, warmup_fraction: float) -> float:
    """Linear warm-up then linear decay (DistilHuBERT's schedule shape)."""
    warm = max(1, int(total * warmup_fraction))
    if step < warm:
        return peak * (step + 1) / warm
    return peak * max(0.0, (total - step) / max(1, total - warm))


def train_teacher(
    model: nn.Module,
    utterances: Sequence[LabelledUtterance],
    objective: str,
    n_labels: int,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    distorter=None,
    warmup_fraction: float = 0.1,
    align_fraction: float = 0.5,
    desc: str = "teacher",
) -> Dict[str, float]:
    """Train ``model`` (s3prl HuBERT/WavLM) in place on ``objective``; returns first/last mean losses.

    ``distorter`` (a :class:`s3prl_ekd.pretrain.ekd.distortions.Distorter`), when given, distorts every
    batch before the model hears it. For ``phones``, the first ``align_fraction`` of the steps
    train frame-wise on the utterances' alignments (:func:`aligned_frames`, or
    :func:`uniform_alignment` for those without), the rest with CTC. Everything random comes
    from ``seed``.
    """
    if not utterances:
        raise TeacherTrainingError("no training utterances: build the corpus first")
    torch.manual_seed(seed)
    rng = random.Random(seed)
    gen = torch.Generator().manual_seed(seed)
    dim = _embed_dim(model)
    head = ObjectiveHead(objective, dim, n_labels)
    params = list(model.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.98), eps=1e-6, weight_decay=1e-6)
    model.train()
    head.train()
    order: List[int] = []
    losses: List[float] = []
    bar = tqdm(range(steps), desc=desc, dynamic_ncols=True, leave=False)
    for step in bar:
        if len(order) < batch_size:
            order += rng.sample(range(len(utterances)), len(utterances))
        batch = [utterances[i] for i in order[:batch_size]]
        del order[:batch_size]
        wavs = [u.wav for u in batch]
        if distorter is not None:
            wavs = distorter(wavs, gen)
        lengths = torch.tensor([len(w) for w in wavs])
        padded = pad_sequence(wavs, batch_first=True)
        feats, frame_pad = model.extract_features(padded, padding_mask=_padding_mask(lengths), mask=False)
        if isinstance(feats, tuple):  # WavLM with ret_layer_results
            feats = feats[0]
        loss = head(feats, frame_pad, batch, aligned=step < align_fraction * steps)
        for group in opt.param_groups:
            group["lr"] = lr_at(step, steps, lr, warmup_fraction)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 5.0)  # DistilHuBERT's clip
        opt.step()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
    model.eval()
    k = max(1, min(10, len(losses) // 4))
    return {"first_loss": sum(losses[:k]) / k, "last_loss": sum(losses[-k:]) / k, "steps": steps,
            "last_loss_is": "ctc" if objective == "phones" and align_fraction < 1 else "cross-entropy",
            "chance_loss": math.log(head.proj.out_features)}


def _embed_dim(model: nn.Module) -> int:
    cfg = getattr(model, "cfg", None)
    if cfg is not None and hasattr(cfg, "encoder_embed_dim"):
        return int(cfg.encoder_embed_dim)
    enc = getattr(model, "encoder", None)
    if enc is not None and hasattr(enc, "embedding_dim"):
        return int(enc.embedding_dim)
    raise TeacherTrainingError(f"cannot tell the hidden size of {type(model).__name__}: expected s3prl HuBERT or WavLM")
