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
    "config": ("s3prl_ekd.pretrain.show_config", "print the full pretraining config a shipped name (ekd_average) or a file resolves to"),
    "prepare-lengths": ("s3prl_ekd.pretrain.prepare_lengths", "write s3prl's len_for_bucket length tables of a LibriSpeech folder"),
    "probe": ("s3prl_ekd.probe.command", "linear probes with bootstrap intervals (PR, SID, ER) for any upstreams on the built-in corpus"),
    "make-corpus": ("s3prl_ekd.corpus.command", "make the built-in speech corpus (SUPERB layouts)"),
    "superb-mini": ("s3prl_ekd.superb.mini", "PR, SID, ER, ASR for one upstream on the built-in corpus (CPU)"),
    "collect-results": ("s3prl_ekd.superb.results", "collect SUPERB metrics from experiment folders into one table"),
    "bench": ("s3prl_ekd.bench.command", "time pretraining steps: s3prl-style teachers vs ours"),
    "export-submission": ("s3prl_ekd.superb.submission.build", "write a SUPERB hidden-set submission folder from a student checkpoint"),
    "verify-submission": ("s3prl_ekd.superb.submission.verify", "check a submission folder: template validate + features equal the student's"),
    "export-hf": ("s3prl_ekd.export.hf", "write the student as a transformers HubertModel folder (safetensors, model card)"),
    "export-s3prl": ("s3prl_ekd.export.s3prl_distiller", "write the student in s3prl's own distiller_local checkpoint format"),
}

# s3prl's own entry points with our names known: every argument goes to them unchanged
PASSTHROUGH = {
    "pretrain": ("s3prl_ekd.pretrain.launch", "s3prl's run_pretrain.py with the EKD expert (-u ekd); -g takes a shipped config's name; torchrun-able"),
    "downstream": ("s3prl_ekd.superb.launch", "s3prl's run_downstream.py with -u ekd_student registered; -c takes a shipped task config's name"),
}


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every registered sub-command."""
    parser = argparse.ArgumentParser(prog="s3prl-ekd", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        importlib.import_module(module).add_arguments(p)
    for name, (module, help_text) in PASSTHROUGH.items():
        p = sub.add_parser(name, help=help_text, description=help_text, add_help=False)
        p.add_argument("args", nargs=argparse.REMAINDER, help="s3prl's flags (-h for them)")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of the ``s3prl-ekd`` console script."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in PASSTHROUGH:
        return int(importlib.import_module(PASSTHROUGH[argv[0]][0]).main(argv[1:]) or 0)
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_module", None):
        parser.print_help()
        return 2
    return int(importlib.import_module(args._module).run(args) or 0)

