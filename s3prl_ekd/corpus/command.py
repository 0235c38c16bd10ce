"""``s3prl-ekd make-corpus DIR``: make (or reuse) the built-in speech corpus under DIR."""

from __future__ import annotations

import argparse
import json

from s3prl_ekd.corpus.plan import SIZES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``make-corpus``."""
    parser.add_argument("dir", help="output folder (the mini SUPERB configs expect data/corpus)")
    parser.add_argument("--size", default="demo", choices=sorted(SIZES),
                        help="preset size: tiny (tests, seconds) or demo (~1 hour of speech)")
    parser.add_argument("--seed", type=int, default=0, help="same seed and size = same bytes")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=N",
                        help="override one size field, e.g. --set vox_speakers=40 (repeatable)")
    parser.add_argument("--force", action="store_true", help="remake even if up to date")


def _parse_overrides(items) -> dict:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not value.strip().isdigit():
            raise SystemExit(f"make-corpus: --set expects FIELD=INTEGER, got {item!r}")
        out[key.strip()] = int(value)
    return out


def run(args: argparse.Namespace) -> int:
    """Make the corpus and print the path of each layout as JSON."""
    from s3prl_ekd.corpus import make_corpus
    from s3prl_ekd.corpus.synth import CorpusWriteError

    try:
        paths = make_corpus(args.dir, size=args.size, seed=args.seed, workers=args.workers,
                            force=args.force, **_parse_overrides(args.overrides))
    except (ValueError, CorpusWriteError) as e:
        raise SystemExit(f"make-corpus: {e}")
    print(json.dumps(paths.to_dict(), indent=1))
    return 0
