"""Teacher specs as the config gives them (``name``, ``upstream``, ``ckpt``, ``layers``, ``weight``), checked."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping, Optional, Tuple

from torch import nn

from s3prl_ekd.config.values import ConfigValueError, check_known_keys, number

SPEC_KEYS = ("name", "upstream", "ckpt", "layers", "weight")
# upstream names that mean "a raw fairseq HuBERT checkpoint" (converted, then ``hubert_local``)
FAIRSEQ_UPSTREAMS = ("fairseq", "hubert_fairseq")


class TeacherError(ValueError):
    """A teacher spec that cannot be loaded or does not fit the plan."""


@dataclass(frozen=True)
class TeacherSpec:
    """One teacher as the config gives it."""

    name: str
    upstream: str
    ckpt: Optional[str] = None
    layers: Optional[Tuple[int, ...]] = None
    weight: float = 1.0

    @classmethod
    def from_mapping(cls, spec: Mapping, index: int = 0) -> "TeacherSpec":
        """Validate one spec mapping; errors name the teacher and the key."""
        if not isinstance(spec, Mapping):
            raise TeacherError(f"teacher #{index} must be a mapping with keys {list(SPEC_KEYS)}, got {spec!r}")
        label = f"teacher {spec.get('name', f'#{index}')!r}"
        check_known_keys(spec, SPEC_KEYS, label, TeacherError, suffix=" in its spec")
        for key in ("name", "upstream"):
            if not spec.get(key):
                raise TeacherError(f"{label}: key `{key}` is missing (e.g. name: hubert, upstream: hubert_base)")
        check_teacher_name(spec["name"], label)
        layers = spec.get("layers")
        if layers is not None:
            if not isinstance(layers, (list, tuple)) or not all(type(l) is int and l >= 0 for l in layers):
                raise TeacherError(f"{label}: `layers` must be a list of layer indices >= 0 (e.g. [4, 8, 12]), got {layers!r}")
            layers = tuple(int(l) for l in layers)
        try:
            weight = number(spec.get("weight", 1.0), "weight", 0.0, low_open=True)
        except ConfigValueError as e:
            raise TeacherError(f"{label}: {e}") from None
        ckpt = spec.get("ckpt")
        return cls(str(spec["name"]), str(spec["upstream"]), str(ckpt) if ckpt else None, layers, weight)


def check_teacher_name(name: object, label: str = "teacher") -> None:
    """Raise :class:`TeacherError` unless ``name`` can name a submodule and a log tag (letters,
    digits, ``_``, ``-``; not an ``nn.Module`` attribute such as ``train`` or ``forward``)."""
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]{0,63}", name) or hasattr(nn.ModuleDict(), name):
        raise TeacherError(
            f"{label}: key `name` must start with a letter and hold only letters, digits, '_' and '-' "
            f"(no '.'), and must not be an nn.Module attribute (train, forward, ...), got {name!r}"
        )
