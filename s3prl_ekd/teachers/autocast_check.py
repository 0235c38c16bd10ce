"""Run-time check that teachers under autocast give the targets they give in fp32.

bf16 / fp16 teacher targets are only an approximation of the fp32 ones, and on some hardware a
bad low-precision kernel makes them wrong without any error: oneDNN's AMX bf16 kernel on Intel
Xeons (Sapphire Rapids and later) gives a frame cosine of -0.39 against fp32 for a grouped
``Conv1d`` with 8 channels per group (HuBERT's positional convolution at a small width). So the
first batch a :class:`~s3prl_ekd.teachers.ensemble.TeacherEnsemble` runs under autocast is run once more
in fp32, and each teacher's hidden states (the layers the target plan uses) are compared frame
by frame. Below ``teacher_speedups.autocast_min_cosine`` (default 0.99) the run stops before its
first update with :class:`AutocastMismatchError`; above it, the agreement is printed once and the
pretrain expert logs it to TensorBoard (``teacher_autocast/<teacher>/cos_min``, ...).

Cost: one extra fp32 pass of the teachers over one batch, once per run.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Dict, List, Mapping, Sequence, Tuple

import torch

from s3prl_ekd.teachers.speedups import target_agreement

FIX = "teacher_speedups: {autocast: off}"


class AutocastMismatchError(ValueError):
    """Teacher hidden states under autocast disagree with fp32 beyond the configured threshold."""

    def __init__(self, message: str, agreement: "AutocastAgreement"):
        super().__init__(message)
        self.agreement = agreement


@dataclass(frozen=True)
class AutocastAgreement:
    """Per teacher: minimum and mean frame cosine and largest relative difference against fp32."""

    dtype: str
    device: str
    min_cosine: float
    teachers: Dict[str, Dict[str, float]] = field(default_factory=dict)

    def worst(self) -> Tuple[str, Dict[str, float]]:
        """The teacher with the lowest minimum frame cosine, and its numbers."""
        name = min(self.teachers, key=lambda n: self.teachers[n]["cos_min"])
        return name, self.teachers[name]

    @property
    def passed(self) -> bool:
        """True when every teacher's minimum frame cosine reaches the threshold."""
        return all(t["cos_min"] >= self.min_cosine for t in self.teachers.values())

    def to_dict(self) -> dict:
        return dict(asdict(self), passed=self.passed)

    def summary(self) -> str:
        """One line for the log."""
        parts = ", ".join(
            f"{n} cos min {t['cos_min']:.4f} / mean {t['cos_mean']:.4f}, max rel diff {t['max_rel_diff']:.3g}"
            for n, t in self.teachers.items()
        )
        return f"teachers under {self.dtype} autocast on {self.device} vs fp32 (first batch): {parts}"

    def error(self) -> AutocastMismatchError:
        """The error that stops a run whose check failed: teacher, cosine, device and the fix."""
        name, t = self.worst()
        return AutocastMismatchError(
            f"teacher {name!r} under {self.dtype} autocast on {self.device} gives targets that disagree with "
            f"fp32: minimum frame cosine {t['cos_min']:.4f} (mean {t['cos_mean']:.4f}, largest relative "
            f"difference {t['max_rel_diff']:.3g}) is below teacher_speedups.autocast_min_cosine = "
            f"{self.min_cosine}. The low-precision kernels of this device compute this teacher wrongly "
            f"(a known case: oneDNN's AMX bf16 kernel for grouped convolutions with few channels per group). "
            f"Run the teachers in fp32 with `{FIX}` in the upstream config",
            self,
        )


def valid_frames(wav_lengths: Sequence[int], downsample_rate: int, frames: int) -> torch.Tensor:
    """Frames of each utterance that hold no padding: ``len // rate``, at most the batch's ``frames``."""
    return torch.tensor([min(frames, max(1, int(n) // downsample_rate)) for n in wav_lengths])


def compare_hidden(
    reference: Mapping[str, List[torch.Tensor] | Mapping[int, torch.Tensor]],
    other: Mapping[str, List[torch.Tensor] | Mapping[int, torch.Tensor]],
    layers: Mapping[str, Sequence[int]],
    wav_lengths: Sequence[int],
    downsample_rates: Mapping[str, int],
) -> Dict[str, Dict[str, float]]:
    """:func:`~s3prl_ekd.teachers.speedups.target_agreement` per teacher over ``layers[teacher]``
    (hidden states per teacher as a list, or a dict layer -> tensor)."""
    out = {}
    for name, ref in reference.items():
        ref, new = _by_layer(ref), _by_layer(other[name])
        used = list(layers.get(name) or ref)
        frames = valid_frames(wav_lengths, downsample_rates[name], min(ref[used[0]].shape[1], new[used[0]].shape[1]))
        out[name] = target_agreement([ref[i] for i in used], [new[i] for i in used], frames)
    return out


def _by_layer(hidden: Sequence[torch.Tensor] | Mapping[int, torch.Tensor]) -> Mapping[int, torch.Tensor]:
    return hidden if isinstance(hidden, Mapping) else dict(enumerate(hidden))
