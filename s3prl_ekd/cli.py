"""``s3prl-ekd`` command line: one sub-command per job, each defined in the module that does it.

A command module exposes ``add_arguments(parser)`` and ``run(args) -> int``; register it in
``COMMANDS`` below (name -> module path, help).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import List, Optional

COMMANDS = {
    # name: (module, one-line help)
    "demo": ("s3prl_ekd.demo.command", "the end-to-end EKD experiment on the built-in corpus (make demo)"),
    "prepare-lengths": ("s3prl_ekd.pretrain.prepare_lengths", "write s3prl's len_for_bucket length tables of a LibriSpeech folder"),
    "probe": ("s3prl_ekd.probe.command", "linear probes with bootstrap intervals (PR, SID, ER) for any upstreams on the built-in corpus"),
    "make-corpus": ("s3prl_ekd.corpus.command", "make the built-in speech corpus (SUPERB layouts)"),
    "superb-mini": ("s3prl_ekd.superb_mini", "PR, SID, ER, ASR for one upstream on the built-in corpus (CPU)"),
    "collect-results": ("s3prl_ekd.results", "collect SUPERB metrics from experiment folders into one table"),
    "bench": ("s3prl_ekd.bench.command", "time pretraining steps: s3prl-style teachers vs ours"),
    "export-submission": ("s3prl_ekd.submission", "write a SUPERB hidden-set submission folder from a student checkpoint"),
    "verify-submission": ("s3prl_ekd.submission_verify", "check a submission folder: template validate + features equal the student's"),
}


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every registered sub-command."""
    parser = argparse.ArgumentParser(prog="s3prl-ekd", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        importlib.import_module(module).add_arguments(p)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of the ``s3prl-ekd`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_module", None):
        parser.print_help()
        return 2
    return int(importlib.import_module(args._module).run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
