"""Teacher specs as the config gives them (``name``, ``upstream``, ``ckpt``, ``layers``, ``weight``), checked."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, fields
from typing import Dict, Mapping, Optional, Tuple

from torch import nn

from s3prl_ekd.config.reader import from_mapping, setting
from s3prl_ekd.config.values import ConfigValueError

# upstream names that mean "a raw fairseq HuBERT checkpoint" (converted, then ``hubert_local``)
FAIRSEQ_UPSTREAMS = ("fairseq", "hubert_fairseq")


class TeacherError(ValueError):
    """A teacher spec that cannot be loaded or does not fit the plan."""


@dataclass(frozen=True)
class TeacherSpec:
    """One teacher as the config gives it."""

    name: str
    upstream: str  # an s3prl hub name (hubert_base, ...), or hubert_local / fairseq with `ckpt`
    ckpt: Optional[str] = None
    layers: Optional[Tuple[int, ...]] = setting(None, low=0)  # None: the target plan's layers
    weight: float = setting(1.0, low=0.0, low_open=True)

    def __post_init__(self):
        check_teacher_name(self.name, f"teacher {self.name!r}")
        if not self.upstream:
            raise ConfigValueError("key `upstream` is empty (e.g. upstream: hubert_base)")

    @staticmethod
    def prepare_mapping(spec: Dict[str, object]) -> Dict[str, object]:
        """A path object or an empty string as ``ckpt`` (from Python callers) is a path string or none."""
        ckpt = spec.get("ckpt")
        if isinstance(ckpt, os.PathLike):
            spec["ckpt"] = os.fspath(ckpt)
        elif ckpt == "":
            spec["ckpt"] = None
        return spec

    @classmethod
    def from_mapping(cls, spec: Mapping, index: int = 0) -> "TeacherSpec":
        """Validate one spec mapping; errors name the teacher and the key."""
        if not isinstance(spec, Mapping):
            raise TeacherError(f"teacher #{index} must be a mapping with keys {[f.name for f in fields(cls)]}, got {spec!r}")
        try:
            return from_mapping(cls, spec)
        except ConfigValueError as e:
            raise TeacherError(f"teacher {spec.get('name', f'#{index}')!r}: {e}") from None


def check_teacher_name(name: object, label: str = "teacher") -> None:
    """Raise :class:`TeacherError` unless ``name`` can name a submodule and a log tag (letters,
    digits, ``_``, ``-``; not an ``nn.Module`` attribute such as ``train`` or ``forward``)."""
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]{0,63}", name) or hasattr(nn.ModuleDict(), name):
        raise TeacherError(
            f"{label}: key `name` must start with a letter and hold only letters, digits, '_' and '-' "
            f"(no '.'), and must not be an nn.Module attribute (train, forward, ...), got {name!r}"
        )
