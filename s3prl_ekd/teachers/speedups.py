"""Switches that make the frozen teachers cheaper to run: the `teacher_speedups:` config block.

Each switch is independent so a user turns on what pays on their hardware (the throughput
benchmark, ``s3prl-ekd bench --ablations all``, measures each one on and off):

- ``autocast``: teachers under bf16 / fp16 autocast. Targets move slightly (the tests bound the
  cosine similarity to the fp32 targets); on GPUs with bf16 this is the big win, on CPUs it may
  be slower. ``auto`` = bf16 on a CUDA device that supports it, fp32 elsewhere.
- ``inference_mode``: ``torch.inference_mode`` instead of ``no_grad``; exact.
- ``truncate_layers``: stop each teacher at the deepest layer the target plan needs; exact.
- ``padded_batch``: one call on the zero-padded batch (what s3prl's upstreams do). HuBERT / WavLM
  Base normalise the first conv layer over time (group norm) and mark padded frames by an even
  split of the samples; for them the teacher normalises each utterance over its own samples and
  masks its own frames (``masked_conv.exact_lengths``), so the call is exact. Other upstreams
  run as s3prl does. ``false`` calls each teacher once per distinct length: exact, slower.
- ``compile``: ``torch.compile`` each teacher; pays on long GPU runs, costs start-up time.

One setting is no switch: ``autocast_min_cosine`` (default 0.99), the least frame cosine between
the autocast and the fp32 hidden states of the first batch a run computes under autocast; below
it the run stops before its first update (:mod:`s3prl_ekd.teachers.autocast_check`).
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass, replace
from typing import Callable, Dict, List, Literal, Mapping, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from s3prl_ekd.config.reader import from_mapping, setting
from s3prl_ekd.distill.masked_conv import valid_mask

Autocast = Literal["auto", "off", "bf16", "fp16"]
SWITCHES = ("autocast", "inference_mode", "truncate_layers", "padded_batch", "compile")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class SpeedupConfigError(ValueError):
    """A `teacher_speedups` block with an unknown key or value."""


@dataclass(frozen=True)
class TeacherSpeedups:
    """Which teacher speed-ups are on (defaults: all that pay safely on a GPU, compile off)."""

    autocast: Autocast = "auto"
    inference_mode: bool = True
    truncate_layers: bool = True
    padded_batch: bool = True
    compile: bool = False
    autocast_min_cosine: float = setting(0.99, low=-1.0, high=1.0)

    @staticmethod
    def prepare_mapping(cfg: Dict[str, object]) -> Dict[str, object]:
        """YAML's ``autocast: false`` / ``autocast: null`` mean ``off``."""
        if "autocast" in cfg and (cfg["autocast"] is False or cfg["autocast"] is None):
            cfg["autocast"] = "off"
        return cfg

    @classmethod
    def from_config(cls, cfg: Optional[Mapping], where: str = "teacher_speedups") -> "TeacherSpeedups":
        """Read a `teacher_speedups:` mapping; unknown keys or bad values name the key and the choices."""
        return from_mapping(cls, {} if cfg is None else cfg, where, SpeedupConfigError)

    @classmethod
    def reference(cls) -> "TeacherSpeedups":
        """Everything off: fp32, full depth, one call per distinct length (the exact targets)."""
        return cls(autocast="off", inference_mode=False, truncate_layers=False, padded_batch=False, compile=False)

    def without(self, name: str) -> "TeacherSpeedups":
        """The same settings with one speed-up switched off."""
        if name not in SWITCHES:
            raise SpeedupConfigError(f"unknown speed-up {name!r}; valid are {sorted(SWITCHES)}")
        return replace(self, **{name: "off" if name == "autocast" else False})

    def to_dict(self) -> Dict[str, object]:
        return asdict(self)

    def switches_on(self) -> List[str]:
        """The names of the speed-ups that are on (what an ablation can switch off)."""
        return [k for k in SWITCHES if getattr(self, k) not in (False, "off")]

    def autocast_dtype(self, device: torch.device) -> Optional[torch.dtype]:
        """The dtype teachers run under on ``device``, or None for fp32."""
        if self.autocast == "auto":
            cuda_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
            return torch.bfloat16 if cuda_bf16 else None
        return _DTYPES.get(self.autocast)

    def context(self, device: torch.device):
        """Grad-free (inference mode if on) and autocast (if on) context for the teachers' forward."""
        stack = contextlib.ExitStack()
        stack.enter_context(torch.inference_mode() if self.inference_mode else torch.no_grad())
        dtype = self.autocast_dtype(device)
        stack.enter_context(torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None))
        return stack


def target_agreement(
    reference: Sequence[torch.Tensor], other: Sequence[torch.Tensor], frame_lengths: torch.Tensor
) -> Dict[str, float]:
    """Frame-wise cosine similarity (min and mean over valid frames of all targets) and the
    largest absolute difference relative to the reference's largest magnitude."""
    cos_all, rel = [], 0.0
    for ref, new in zip(reference, other):
        t = min(ref.shape[1], new.shape[1])
        ref, new = ref[:, :t].float(), new[:, :t].float()
        valid = valid_mask(frame_lengths.cpu(), t)
        cos_all.append(F.cosine_similarity(ref, new, dim=-1)[valid])
        rel = max(rel, float(((ref - new).abs()[valid]).max() / ref[valid].abs().max()))
    cos = torch.cat(cos_all)
    return {"cos_min": float(cos.min()), "cos_mean": float(cos.mean()), "max_rel_diff": rel}


def call_per_length(teacher: Callable[[List[torch.Tensor]], List[torch.Tensor]], wavs: Sequence[torch.Tensor]) -> List[torch.Tensor]:
    """Hidden states of ``teacher`` called once per distinct length (no padding inside a call),
    zero-padded to the longest and returned in input order: the exact alternative to one padded
    call for models whose conv extractor normalises over time."""
    groups: Dict[int, List[int]] = {}
    for i, w in enumerate(wavs):
        groups.setdefault(len(w), []).append(i)
    if len(groups) == 1:
        return list(teacher(list(wavs)))
    order = [i for idx in groups.values() for i in idx]
    chunks = [list(teacher([wavs[i] for i in idx])) for idx in groups.values()]
    t_max = max(c[0].shape[1] for c in chunks)
    inverse = torch.empty(len(order), dtype=torch.long)
    inverse[torch.tensor(order)] = torch.arange(len(order))
    out = []
    for layer in range(len(chunks[0])):
        stacked = torch.cat([F.pad(c[layer], (0, 0, 0, t_max - c[layer].shape[1])) for c in chunks], 0)
        out.append(stacked[inverse.to(stacked.device)])
    return out


def compile_blocks(expert: nn.Module) -> int:
    """``torch.compile`` (dynamic shapes) each transformer block of an s3prl HuBERT / WavLM /
    wav2vec 2.0 expert in place, keeping s3prl's hooks; returns how many blocks were compiled."""
    layers = getattr(getattr(getattr(expert, "model", None), "encoder", None), "layers", None)
    if not isinstance(layers, nn.ModuleList):
        return 0
    for block in layers:
        block.compile(dynamic=True)
    return len(layers)
