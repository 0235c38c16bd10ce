"""``s3prl-ekd prepare-lengths``: write s3prl's ``len_for_bucket`` tables of a LibriSpeech folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from s3prl_ekd.io import SAMPLE_RATE
from s3prl_ekd.pretrain.ekd.dataset import LIBRISPEECH_SETS, DataConfigError, scan_lengths, write_length_table


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of the command."""
    parser.add_argument("root", metavar="LIBRISPEECH_ROOT", help="folder holding train-clean-100/ etc.")
    parser.add_argument(
        "--output", default="data/len_for_bucket",
        help="folder of the tables, one <subset>.csv each (default: data/len_for_bucket, as s3prl); "
        "give it as pretrain_expert.datarc.file_path",
    )
    parser.add_argument(
        "--sets", nargs="+", default=None,
        help=f"subsets to scan (default: those of {', '.join(LIBRISPEECH_SETS)} that exist)",
    )
    parser.add_argument("--extension", default=".flac", help="audio file extension (default .flac)")


def run(args: argparse.Namespace) -> int:
    """Scan each subset and write its table; returns the exit status."""
    root = Path(args.root)
    if not root.is_dir():
        raise SystemExit(f"prepare-lengths: {root} is not a folder: give the LibriSpeech root")
    sets = args.sets or [s for s in LIBRISPEECH_SETS if (root / s).is_dir()]
    if not sets:
        raise SystemExit(f"prepare-lengths: no LibriSpeech subset ({', '.join(LIBRISPEECH_SETS)}) under {root}: pass --sets")
    for subset in sets:
        if not (root / subset).is_dir():
            raise SystemExit(f"prepare-lengths: subset folder {root / subset} does not exist")
        try:
            rows = scan_lengths(root, subset, args.extension)
        except DataConfigError as e:
            raise SystemExit(f"prepare-lengths: {e}") from None
        if not rows:
            raise SystemExit(f"prepare-lengths: no *{args.extension} files under {root / subset}")
        path = write_length_table(rows, Path(args.output) / f"{subset}.csv")
        hours = sum(n for _, n in rows) / SAMPLE_RATE / 3600
        print(f"{path}: {len(rows)} utterances, {hours:.2f} h")
    return 0
