"""Value checks for config entries: each error names the key and the values it allows.

YAML reads ``.nan``, ``.inf``, ``"false"`` and ``0`` without complaint, and s3prl's builders then
fail deep inside (``ZeroDivisionError``, ``NotImplementedError``) or, worse, train on NaN. These
helpers are the one place a config value is checked: :func:`s3prl_ekd.config.reader.from_mapping`
calls them for every field of every config section before anything is built.
"""

from __future__ import annotations

import math
from typing import Any, Collection, Iterable, Optional, Type

MAX_DIM = 1 << 16


class ConfigValueError(ValueError):
    """A config value of the wrong type or out of range; the message names the key."""


def check_known_keys(
    mapping: Iterable[str],
    known: Collection[str],
    where: str = "",
    error: Type[Exception] = ConfigValueError,
    *,
    prefix: str = "",
) -> None:
    """Raise ``error`` naming every key of ``mapping`` not in ``known`` and the valid ones.

    The message reads ``<where>: unknown key(s) <keys>: valid are <known>``; with a ``prefix``
    (the section's dotted path) keys are shown as ``prefix.key``, else as a list. The config
    reader (:func:`s3prl_ekd.config.reader.from_mapping`) is its one caller.
    """
    unknown = sorted(set(mapping) - set(known), key=str)
    if not unknown:
        return
    shown = ", ".join(f"{prefix}.{k}" for k in unknown) if prefix else str(unknown)
    valid = list(known) if isinstance(known, (list, tuple)) else sorted(known, key=str)
    head = f"{where}: " if where else ""
    raise error(f"{head}unknown key(s) {shown}: valid are {valid}")


def integer(value: Any, key: str, low: Optional[int] = 1, high: Optional[int] = MAX_DIM) -> int:
    """``value`` as an int in ``low..high`` (None: no bound; bools and floats refused)."""
    ok = type(value) is int and (low is None or value >= low) and (high is None or value <= high)
    if not ok:
        if low is not None and high is not None:
            bounds = f" in {low}..{high}"
        else:
            bounds = f" >= {low}" if low is not None else (f" <= {high}" if high is not None else "")
        raise ConfigValueError(f"`{key}` must be an integer{bounds}, got {value!r}")
    return value


def number(value: Any, key: str, low: Optional[float] = 0.0, high: float = math.inf, low_open: bool = False) -> float:
    """``value`` as a finite float in ``[low, high]`` (``(low, high]`` when ``low_open``; None: no lower bound)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    ok = ok and value <= high
    if not ok:
        parts = [] if low is None else [f"{'>' if low_open else '>='} {low:g}"]
        parts += [f"<= {high:g}"] if math.isfinite(high) else []
        bounds = (" " + " and ".join(parts)) if parts else ""
        raise ConfigValueError(f"`{key}` must be a finite number{bounds}, got {value!r}")
    return float(value)


def boolean(value: Any, key: str) -> bool:
    """``value`` if it is a YAML boolean (``true``/``false``, unquoted); strings such as ``"false"`` refused."""
    if not isinstance(value, bool):
        raise ConfigValueError(f"`{key}` must be true or false (unquoted), got {value!r}")
    return value


def choice(value: Any, key: str, allowed: Collection[str]) -> str:
    """``value`` if it is one of ``allowed``."""
    if value not in allowed:
        raise ConfigValueError(f"`{key}` must be one of {list(allowed)}, got {value!r}")
    return value
