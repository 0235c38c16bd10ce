"""The target plan: which teacher layers the student predicts, and how they are combined.

A plan is a list of named targets. Each target says how it is made from teacher hidden states
(``copy`` one teacher's layer, ``mean`` over teachers of a layer, ``concat`` along features), its
dimension, its loss weight, and the head group it belongs to (targets of one group share the
expanding linear layer of s3prl's ``expand-last`` output block, as DistilHuBERT's three heads do).
The student builds its heads from the plan, the loss walks it, the logs name its entries.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import torch

SCHEMES = ("single", "average", "concat", "multihead")
DEFAULT_LAYERS = (4, 8, 12)  # DistilHuBERT's prediction targets


class PlanError(ValueError):
    """A target plan that cannot be built from the given teachers or settings."""


@dataclass(frozen=True)
class Target:
    """One prediction target: ``op`` over ``sources`` (teacher name, layer index) pairs."""

    name: str
    dim: int
    op: str  # copy | mean | concat
    sources: Tuple[Tuple[str, int], ...]
    source_weights: Tuple[float, ...] = ()
    weight: float = 1.0
    group: str = "shared"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["sources"] = [list(s) for s in self.sources]
        d["source_weights"] = list(self.source_weights)
        return d

    @classmethod
    def from_dict(cls, d: Mapping) -> "Target":
        return cls(
            name=str(d["name"]),
            dim=int(d["dim"]),
            op=str(d["op"]),
            sources=tuple((str(t), int(l)) for t, l in d["sources"]),
            source_weights=tuple(float(w) for w in d.get("source_weights", ())),
            weight=float(d.get("weight", 1.0)),
            group=str(d.get("group", "shared")),
        )


@dataclass
class TargetPlan:
    """An ordered list of targets; the single source of truth for heads, targets and loss."""

    targets: List[Target] = field(default_factory=list)
    scheme: str = "custom"

    # ----- construction -------------------------------------------------------------------
    @classmethod
    def from_scheme(
        cls,
        scheme: str,
        teacher_dims: Mapping[str, int],
        layers: Optional[Mapping[str, Sequence[int]] | Sequence[int]] = None,
        teacher_weights: Optional[Mapping[str, float]] = None,
    ) -> "TargetPlan":
        """Build the plan of one of the paper's schemes from teacher names and hidden sizes.

        ``layers`` is one list for all teachers or a mapping teacher -> list (default 4, 8, 12);
        ``teacher_weights`` weight the mean (``average``) or the loss (``multihead``).
        """
        if scheme not in SCHEMES:
            raise PlanError(f"unknown scheme {scheme!r} (key `scheme`): choose one of {', '.join(SCHEMES)}")
        names = list(teacher_dims)
        if not names:
            raise PlanError("no teachers given (key `teachers`): list at least one")
        if scheme == "single" and len(names) != 1:
            raise PlanError(
                f"scheme 'single' takes exactly one teacher, got {len(names)} ({', '.join(names)}): "
                "use 'average', 'concat' or 'multihead' for several"
            )
        per_teacher = _layers_per_teacher(names, layers)
        weights = {n: float((teacher_weights or {}).get(n, 1.0)) for n in names}
        unknown = set(teacher_weights or {}) - set(names)
        if unknown:
            raise PlanError(f"teacher_weights names unknown teachers {sorted(unknown)}: known are {names}")

        targets: List[Target] = []
        if scheme in ("single", "multihead"):
            for n in names:
                for l in per_teacher[n]:
                    targets.append(
                        Target(
                            name=f"{n}/L{l}",
                            dim=int(teacher_dims[n]),
                            op="copy",
                            sources=((n, l),),
                            source_weights=(1.0,),
                            weight=weights[n] if scheme == "multihead" else 1.0,
                            group=n if scheme == "multihead" else "shared",
                        )
                    )
            return cls(targets, scheme)

        # layer-wise schemes pair the i-th layer of every teacher
        counts = {n: len(per_teacher[n]) for n in names}
        if len(set(counts.values())) != 1:
            raise PlanError(
                f"scheme {scheme!r} pairs teachers layer by layer, but they list different numbers "
                f"of target layers {counts}: give every teacher the same number of layers"
            )
        if scheme == "average":
            dims = {n: int(teacher_dims[n]) for n in names}
            if len(set(dims.values())) != 1:
                raise PlanError(
                    f"scheme 'average' needs teachers of one hidden size, got {dims}: "
                    "use 'concat' or 'multihead' for teachers of different sizes"
                )
        total_w = sum(weights.values())
        for i in range(counts[names[0]]):
            srcs = tuple((n, per_teacher[n][i]) for n in names)
            label = "-".join(f"L{l}" for l in sorted({l for _, l in srcs}))
            if scheme == "average":
                targets.append(
                    Target(
                        name=f"avg/{label}",
                        dim=int(teacher_dims[names[0]]),
                        op="mean",
                        sources=srcs,
                        source_weights=tuple(weights[n] / total_w for n in names),
                    )
                )
            else:
                targets.append(
                    Target(
                        name=f"concat/{label}",
                        dim=sum(int(teacher_dims[n]) for n in names),
                        op="concat",
                        sources=srcs,
                        source_weights=tuple(1.0 for _ in names),
                    )
                )
        return cls(targets, scheme)

    # ----- views --------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.targets)

    @property
    def names(self) -> List[str]:
        return [t.name for t in self.targets]

    def groups(self) -> Dict[str, List[int]]:
        """Head groups in order of first appearance: group name -> indices of its targets."""
        out: Dict[str, List[int]] = {}
        for i, t in enumerate(self.targets):
            out.setdefault(t.group, []).append(i)
        return out

    def required_layers(self) -> Dict[str, int]:
        """Deepest layer each teacher must compute (teachers can stop there)."""
        deepest: Dict[str, int] = {}
        for t in self.targets:
            for n, l in t.sources:
                deepest[n] = max(deepest.get(n, 0), l)
        return deepest

    def used_layers(self) -> Dict[str, List[int]]:
        """The layers each teacher's targets read, ascending (the ensemble keeps only these)."""
        used: Dict[str, set] = {}
        for t in self.targets:
            for n, l in t.sources:
                used.setdefault(n, set()).add(l)
        return {n: sorted(ls) for n, ls in used.items()}

    def teachers(self) -> List[str]:
        """Teacher names in order of first use."""
        seen: Dict[str, None] = {}
        for t in self.targets:
            for n, _ in t.sources:
                seen.setdefault(n, None)
        return list(seen)

    # ----- targets from teacher hidden states ----------------------------------------------
    def build(self, hidden: Mapping[str, Sequence[torch.Tensor]]) -> List[torch.Tensor]:
        """Make every target (B x T x D) from ``hidden[teacher][layer]`` (B x T x D_teacher).

        Layer 0 is the teachers' pre-transformer feature, layer k the output of block k. All
        tensors must already share B and T (see ``align_frames``).
        """
        out = []
        for t in self.targets:
            feats = [hidden[n][l] for n, l in t.sources]
            if t.op == "copy":
                out.append(feats[0])
            elif t.op == "mean":
                acc = feats[0] * t.source_weights[0]
                for f, w in zip(feats[1:], t.source_weights[1:]):
                    acc = acc + f * w
                out.append(acc)
            elif t.op == "concat":
                out.append(torch.cat(feats, dim=-1))
            else:
                raise PlanError(f"target {t.name!r} has unknown op {t.op!r}: use copy, mean or concat")
        return out

    # ----- serialisation ------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"scheme": self.scheme, "targets": [t.to_dict() for t in self.targets]}

    @classmethod
    def from_dict(cls, d: Mapping) -> "TargetPlan":
        return cls([Target.from_dict(t) for t in d["targets"]], str(d.get("scheme", "custom")))


def _layers_per_teacher(names, layers) -> Dict[str, List[int]]:
    if layers is None:
        return {n: list(DEFAULT_LAYERS) for n in names}
    if isinstance(layers, Mapping):
        missing = [n for n in names if n not in layers]
        if missing:
            raise PlanError(f"`layers` gives no target layers for teacher(s) {missing}: add them or give one list")
        extra = set(layers) - set(names)
        if extra:
            raise PlanError(f"`layers` names unknown teacher(s) {sorted(extra)}: known are {names}")
        out = {n: [int(l) for l in layers[n]] for n in names}
    else:
        out = {n: [int(l) for l in layers] for n in names}
    for n, ls in out.items():
        if not ls:
            raise PlanError(f"teacher {n!r} has an empty list of target layers (key `layers`)")
        if any(l < 0 for l in ls):
            raise PlanError(f"teacher {n!r}: target layers must be >= 0, got {ls} (key `layers`)")
    return out


def align_frames(tensors: Sequence[torch.Tensor]) -> Tuple[List[torch.Tensor], int]:
    """Crop B x T x D tensors to the shortest T (teachers may give one frame fewer; s3prl #331)."""
    t_min = min(x.shape[1] for x in tensors)
    return [x[:, :t_min] for x in tensors], t_min
