"""``s3prl-ekd config NAME``: the full pretraining config a shipped name or a file resolves to.

The shipped upstream configs say only what differs from the documented defaults (teachers,
scheme, where the student starts); this prints every key as a run reads it.
"""

from __future__ import annotations

import argparse
import sys

import yaml

from s3prl_ekd.config.resources import UPSTREAM, ConfigNotFoundError, resolve_config
from s3prl_ekd.pretrain.ekd.config import PretrainConfigError, make_upstream_config, read_yaml


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="a shipped config's name (ekd_average, pretrain_runner) or a YAML path")


def run(args: argparse.Namespace) -> int:
    """Print the resolved config as YAML; 1 with a message naming the file when it is not usable."""
    try:
        path = resolve_config(args.config, UPSTREAM)
        given = read_yaml(str(path))
        # a runner config (s3prl's Runner reads it as written) or an upstream config (defaults filled in)
        full = given if "runner" in given else make_upstream_config(str(path))
    except (ConfigNotFoundError, PretrainConfigError) as e:
        print(f"config: {e}", file=sys.stderr)
        return 1
    print(f"# {path}")
    yaml.safe_dump(full, sys.stdout, sort_keys=False)
    return 0
