"""``s3prl-ekd probe``: linear probes with bootstrap intervals for any set of upstreams on the built-in corpus."""

from __future__ import annotations

import argparse
import json
import os
from typing import Dict, List

from s3prl_ekd.probe.data import UpstreamSpec
from s3prl_ekd.probe.evaluate import TASKS, ProbeSettings


def parse_upstream(text: str) -> UpstreamSpec:
    """``[NAME=]UPSTREAM[:CKPT]`` -> a spec (NAME defaults to UPSTREAM)."""
    name, _, rest = text.rpartition("=") if "=" in text else ("", "", text)
    upstream, _, ckpt = rest.partition(":")
    if not upstream:
        raise argparse.ArgumentTypeError(f"--upstream {text!r}: expected [NAME=]UPSTREAM[:CKPT], e.g. fbank or "
                                         "mine=ekd_student:student.ckpt")
    return UpstreamSpec(name or upstream, upstream, ckpt or None)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``probe``."""
    parser.add_argument("--corpus", default="data/corpus", help="a corpus made by make-corpus (default data/corpus)")
    parser.add_argument("--upstream", "-u", action="append", required=True, type=parse_upstream,
                        help="[NAME=]UPSTREAM[:CKPT], repeatable: any s3prl hub name (fbank, hubert_local:x.pt, ...) "
                             "or ekd_student:student.ckpt")
    parser.add_argument("--single", nargs="*", default=[], metavar="NAME",
                        help="rows distilled from one teacher (each ensemble is compared with the best of them)")
    parser.add_argument("--ensemble", nargs="*", default=[], metavar="NAME",
                        help="ensemble rows (compared with the best single and with each other); "
                             "without any, every pair of rows is compared")
    parser.add_argument("--out", default="result/probe", help="folder for probes.json, probes.md and the feature cache")
    parser.add_argument("--frames", type=int, default=ProbeSettings.max_train_frames,
                        help="PR training positions drawn (default %(default)s; 0: all)")
    parser.add_argument("--layers", type=int, nargs="*", default=None,
                        help="hidden states to concatenate (default: all)")
    parser.add_argument("--tasks", nargs="*", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--draws", type=int, default=ProbeSettings.draws, help="bootstrap draws")
    parser.add_argument("--seed", type=int, default=0, help="frame subsample, folds and bootstrap draws")
    parser.add_argument("--threads", type=int, default=1, help="threads per process")
    parser.add_argument("--workers", type=int, default=1,
                        help="processes at once, each extracting and probing one upstream (e.g. 2 on 2 cores)")


def run(args: argparse.Namespace) -> int:
    """Probe every upstream; print the table and write ``probes.json`` / ``probes.md`` under ``--out``."""
    from s3prl_ekd.probe.data import read_probe_corpus
    from s3prl_ekd.probe.evaluate import run_probes
    from s3prl_ekd.probe.report import probe_markdown, protocol_lines

    names = [s.name for s in args.upstream]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise SystemExit(f"--upstream: row name(s) {dupes} given twice: name them NAME=UPSTREAM[:CKPT]")
    unknown = sorted(set(args.single + args.ensemble) - set(names))
    if unknown:
        raise SystemExit(f"--single/--ensemble name(s) {unknown} are not rows given with --upstream ({names})")
    kinds = {**{n: "single" for n in args.single}, **{n: "ensemble" for n in args.ensemble}}
    runs: Dict[str, List[UpstreamSpec]] = {
        s.name: [UpstreamSpec(s.name, s.upstream, s.ckpt, kinds.get(s.name, ""))] for s in args.upstream}
    settings = ProbeSettings(max_train_frames=args.frames or None, draws=args.draws, seed=args.seed,
                             layers=tuple(args.layers) if args.layers else None, threads=args.threads, workers=args.workers,
                             tasks=tuple(args.tasks))
    corpus = read_probe_corpus(args.corpus, settings.max_train_frames, settings.seed)
    probes = run_probes(runs, corpus, settings, cache_dir=os.path.join(args.out, "features"))
    os.makedirs(args.out, exist_ok=True)
    text = "# Linear probes\n\n" + probe_markdown(probes) + "\n\n" + "\n".join(protocol_lines(probes)) + "\n"
    with open(os.path.join(args.out, "probes.md"), "w", encoding="utf-8") as f:
        f.write(text)
    with open(os.path.join(args.out, "probes.json"), "w", encoding="utf-8") as f:
        json.dump(probes, f, indent=1)
    print(text)
    print(f"[probe] features {probes['timing']['features']:.0f} s, probes {probes['timing']['probes']:.0f} s; "
          f"wrote {args.out}/probes.md and probes.json")
    return 0
