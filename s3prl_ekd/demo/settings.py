"""The demo's settings: presets in ``demo.yaml`` (``default``, ``quick``), each a full tree of keys.

``quick`` lists only what it changes; it is merged over ``default``. A user file given with
``--config`` is merged over the chosen preset the same way, and may only use known keys.
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

import yaml

DEMO_YAML = Path(__file__).with_name("demo.yaml")
PRESETS = ("default", "quick")


class DemoSettingsError(ValueError):
    """A demo setting that is unknown or malformed."""


def merge(base: Mapping, over: Mapping, where: str = "") -> Dict[str, Any]:
    """``over`` merged into a copy of ``base``; a key ``base`` lacks is an error naming it.

    Mappings merge key by key, except those listed in :data:`FREE_KEYS`, which are replaced
    whole: their contents go to other modules, which check their keys themselves.
    """
    out = copy.deepcopy(dict(base))
    for key, value in over.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in out:
            raise DemoSettingsError(f"unknown demo setting {path!r}: known keys here are {sorted(out)}")
        if isinstance(out[key], Mapping) and isinstance(value, Mapping) and path not in FREE_KEYS:
            out[key] = merge(out[key], value, path)
        else:
            out[key] = copy.deepcopy(value)
    return out


# Mappings handed whole to another module (it checks their keys itself), so any key may appear.
FREE_KEYS = {"teachers.roster", "downstream.overrides", "pretrain.overrides", "student.config"}


def load_settings(preset: str = "default", user_file: Optional[str] = None) -> Dict[str, Any]:
    """The settings of ``preset`` (``default`` or ``quick``), with ``user_file`` merged over them."""
    if preset not in PRESETS:
        raise DemoSettingsError(f"unknown demo preset {preset!r}: choose one of {PRESETS}")
    with open(DEMO_YAML, encoding="utf-8") as f:
        presets = yaml.safe_load(f)
    settings = copy.deepcopy(presets["default"])
    if preset != "default":
        settings = merge(settings, presets[preset] or {})
    if user_file:
        with open(user_file, encoding="utf-8") as f:
            user = yaml.safe_load(f) or {}
        if not isinstance(user, Mapping):
            raise DemoSettingsError(f"{user_file} must hold a mapping of demo settings (see {DEMO_YAML})")
        settings = merge(settings, user)
    settings["preset"] = preset
    return settings


def fingerprint(*parts: Any) -> str:
    """A short stable hash of plain data: the key that tells whether a step's output is current."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
