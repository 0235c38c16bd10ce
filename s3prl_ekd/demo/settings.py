"""The demo's settings: presets in ``demo.yaml`` (``default``, ``quick``), each a full tree of keys.

``quick`` lists only what it changes; it is merged over ``default``. A user file given with
``--config`` is merged over the chosen preset the same way. The merged tree is read by
:class:`DemoSettings` (types, ranges, unknown keys named); the values' one place is demo.yaml.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Literal, Mapping, Optional

import yaml

from s3prl_ekd.config.reader import from_mapping, setting
from s3prl_ekd.config.values import ConfigValueError
from s3prl_ekd.distill.targets import SCHEMES

DEMO_YAML = Path(__file__).with_name("demo.yaml")
PRESETS = ("default", "quick")


class DemoSettingsError(ValueError):
    """A demo setting that is unknown or malformed."""


def merge(base: Mapping, over: Mapping, where: str = "") -> Dict[str, Any]:
    """``over`` merged into a copy of ``base``, mapping by mapping.

    Mappings listed in :data:`FREE_KEYS` are replaced whole: their contents go to other modules,
    which read them with their own config classes. Unknown keys are left for :class:`DemoSettings`
    to name.
    """
    out = copy.deepcopy(dict(base))
    for key, value in over.items():
        path = f"{where}.{key}" if where else str(key)
        if isinstance(out.get(key), Mapping) and isinstance(value, Mapping) and path not in FREE_KEYS:
            out[key] = merge(out[key], value, path)
        else:
            out[key] = copy.deepcopy(value)
    return out


# Mappings handed whole to another module (it reads them itself), so any key may appear.
FREE_KEYS = {"teachers.roster", "downstream.overrides", "pretrain.overrides", "student.config"}
POSITIVE = {"low": 0.0, "low_open": True}


# The demo's settings as types and ranges: their values live in demo.yaml's `default` preset.
@dataclass(frozen=True)
class CorpusSettings:
    size: str  # a size of s3prl_ekd.corpus (tiny, demo, ...)


@dataclass(frozen=True)
class TeacherModel:
    conv_feature_layers: str
    encoder_layers: int = setting(low=1)
    encoder_embed_dim: int = setting(low=1)
    conv_pos_groups: int = setting(low=1)


@dataclass(frozen=True)
class TeacherTraining:
    steps: int = setting(low=0)
    batch_size: int = setting(low=1)
    lr: float = setting(**POSITIVE)
    max_seconds: float = setting(**POSITIVE)
    align_fraction: float = setting(low=0.0, high=1.0)


@dataclass(frozen=True)
class TeacherSettings:
    model: TeacherModel
    training: TeacherTraining
    roster: Dict[str, Any]  # name -> how it is made (make_teachers reads it)


@dataclass(frozen=True)
class StudentSettings:
    config: Dict[str, Any]  # a student config (StudentConfig reads it)
    layers: List[int] = setting(low=0, nonempty=True)
    init_from_teacher: Optional[str] = setting()  # null: the student starts from random weights


@dataclass(frozen=True)
class PretrainSettings:
    steps: int = setting(low=1)
    batch_size: int = setting(low=1)
    lr: float = setting(**POSITIVE)
    crop_seconds: float = setting(**POSITIVE)
    overrides: Dict[str, Any] = setting()  # keys of the pretraining config


@dataclass(frozen=True)
class Method:
    name: str
    kind: Literal["floor", "single", "ensemble"]
    scheme: Optional[Literal[SCHEMES]] = None
    teachers: Optional[List[str]] = None


@dataclass(frozen=True)
class DownstreamSettings:
    tasks: List[Literal["PR", "SID", "ER", "ASR"]]
    steps: Dict[str, int] = setting(low=1)
    overrides: Dict[str, Any] = setting()  # per task: extra s3prl -o overrides


@dataclass(frozen=True)
class DemoSettings:
    seed: int
    seeds: int = setting(low=1)
    threads: int = setting(low=1)
    corpus: CorpusSettings = setting()
    teachers: TeacherSettings = setting()
    student: StudentSettings = setting()
    pretrain: PretrainSettings = setting()
    methods: List[Method] = setting(nonempty=True)
    evaluate_teachers: bool = setting()
    downstream: DownstreamSettings = setting()
    probes: Dict[str, Any] = setting()  # ProbeSettings' keys and `enabled`; read when the probes run


def load_settings(preset: str = "default", user_file: Optional[str] = None) -> Dict[str, Any]:
    """The settings of ``preset`` (``default`` or ``quick``), with ``user_file`` merged over them;
    checked by :class:`DemoSettings` and returned as plain data (their fingerprints key the caches)."""
    if preset not in PRESETS:
        raise DemoSettingsError(f"unknown demo preset {preset!r}: choose one of {PRESETS}")
    with open(DEMO_YAML, encoding="utf-8") as f:
        presets = yaml.safe_load(f)
    settings = copy.deepcopy(presets["default"])
    if preset != "default":
        settings = merge(settings, presets[preset] or {})
    where = str(DEMO_YAML)
    if user_file:
        with open(user_file, encoding="utf-8") as f:
            user = yaml.safe_load(f) or {}
        if not isinstance(user, Mapping):
            raise DemoSettingsError(f"{user_file} must hold a mapping of demo settings (see {DEMO_YAML})")
        settings = merge(settings, user)
        where = f"{user_file} over the {preset!r} preset"
    try:
        from_mapping(DemoSettings, settings)
    except ConfigValueError as e:
        raise DemoSettingsError(f"demo settings ({where}): {e}") from None
    settings["preset"] = preset
    return settings


def fingerprint(*parts: Any) -> str:
    """A short stable hash of plain data: the key that tells whether a step's output is current."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
