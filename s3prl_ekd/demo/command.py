"""``s3prl-ekd demo``: the end-to-end EKD experiment on the built-in corpus (what ``make demo`` runs)."""

from __future__ import annotations

import argparse

from s3prl_ekd.demo.settings import DEMO_YAML, load_settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``demo``."""
    parser.add_argument("--quick", action="store_true",
                        help="the quick preset (tiny corpus, few steps; a few minutes): what the tests run")
    parser.add_argument("--out", default=None,
                        help="work and results folder (default results/demo, or results/demo-quick with --quick)")
    parser.add_argument("--config", default=None,
                        help=f"YAML of settings merged over the preset (keys as in {DEMO_YAML.name})")


def run(args: argparse.Namespace) -> int:
    """Run the demo; prints the table and the total time."""
    from s3prl_ekd.demo.experiment import run_demo

    preset = "quick" if args.quick else "default"
    settings = load_settings(preset, args.config)
    out = args.out or ("results/demo-quick" if args.quick else "results/demo")
    run_demo(settings, out)
    return 0
