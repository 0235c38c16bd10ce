"""The configs this package ships, found where it is installed.

The checkout keeps them at its root (``upstream_configs/``: one file per teachers x scheme and the
runner config; ``downstream_configs/``: SUPERB task configs, ``vocab/``, ``dict/``), where users of
s3prl look for them. The wheel carries the same folders as package data inside ``s3prl_ekd/``
(``setup.py`` maps them; no copies in the tree), read with :mod:`importlib.resources`.
A shipped config can be named (``ekd_average``) wherever a path is accepted.
"""

from __future__ import annotations

import importlib.resources
import os
from pathlib import Path
from typing import Callable, List, Mapping

UPSTREAM = "upstream_configs"
DOWNSTREAM = "downstream_configs"
KINDS = (UPSTREAM, DOWNSTREAM)
CHECKOUT_ROOT = Path(__file__).resolve().parents[2]


class ConfigNotFoundError(FileNotFoundError):
    """A config given by name that is no shipped config, and no file either."""


def shipped_dir(kind: str) -> Path:
    """The folder of shipped configs ``kind`` (``upstream_configs`` or ``downstream_configs``):
    the installed package's data, else the checkout's root folder."""
    if kind not in KINDS:
        raise ValueError(f"unknown config kind {kind!r}; one of {KINDS}")
    installed = importlib.resources.files("s3prl_ekd") / kind
    if installed.is_dir():
        return Path(str(installed))
    return CHECKOUT_ROOT / kind


def shipped_names(kind: str) -> List[str]:
    """The names (file stems) of the shipped YAML configs of ``kind``."""
    return sorted(p.stem for p in shipped_dir(kind).glob("*.yaml"))


def resolve_config(name_or_path: str | os.PathLike, kind: str) -> Path:
    """A config path as given (when it exists), else the shipped config of that name
    (``ekd_average``, ``ekd_average.yaml`` or ``upstream_configs/ekd_average.yaml``)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    stem = path.name[: -len(".yaml")] if path.name.endswith(".yaml") else path.name
    candidate = shipped_dir(kind) / f"{stem}.yaml"
    if path.parent in (Path("."), Path(kind)) and candidate.is_file():
        return candidate
    raise ConfigNotFoundError(
        f"config {str(name_or_path)!r} is neither a file nor a shipped {kind[:-1].replace('_', ' ')}: "
        f"give a path, or one of {', '.join(shipped_names(kind))}"
    )


def resolve_shipped_paths(config: object) -> object:
    """``config`` with every relative path into a shipped folder (``downstream_configs/vocab/phoneme.txt``)
    made absolute: the file as given where it exists from here, else the shipped one."""
    if isinstance(config, Mapping):
        return {k: resolve_shipped_paths(v) for k, v in config.items()}
    if isinstance(config, list):
        return [resolve_shipped_paths(v) for v in config]
    if isinstance(config, str) and not os.path.isabs(config):
        head, _, rest = config.partition("/")
        if head in KINDS and rest:
            if os.path.exists(config):
                return os.path.abspath(config)
            if (shipped_dir(head) / rest).exists():
                return str(shipped_dir(head) / rest)
    return config


def resolve_config_flags(argv: List[str], flags: Mapping[str, str], command: str,
                         to_path: Callable[[Path], Path] = lambda p: p) -> List[str]:
    """``argv`` with the value of each flag in ``flags`` (flag -> config kind; ``-g x`` or ``-g=x``)
    resolved by :func:`resolve_config` and passed through ``to_path``; an unknown name ends the
    ``command`` with a message listing the shipped configs."""
    out = list(argv)
    for i, arg in enumerate(out):
        flag, eq, value = arg.partition("=")
        j = i if eq else i + 1
        if flag not in flags or j >= len(out):
            continue
        try:
            path = str(to_path(resolve_config(value if eq else out[j], flags[flag])))
        except ConfigNotFoundError as e:
            raise SystemExit(f"{command} {flag}: {e}") from None
        out[j] = f"{flag}={path}" if eq else path
    return out
