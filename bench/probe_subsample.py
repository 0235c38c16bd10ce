"""How far the PR probe's training-frame subsample moves its score, and what each size costs.

    python bench/probe_subsample.py results/demo --sizes 5000 10000 20000 40000 0 --draws 3 \
        --json bench/results_probe_subsample.json

Takes the demo's rows (its methods; each student's checkpoint from ``<work>/students/``),
extracts every row's features at all training positions once (cached beside the demo's own, under
``<work>/probes/features``), then refits the PR probe on ``--draws`` seeded subsamples of each size
(0: all positions) and scores the test split. Prints, per row and size, the frame error % (mean
and range over the draws) and the CPU seconds of one probe (the ``C`` grid included).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from s3prl_ekd.demo.settings import load_settings
from s3prl_ekd.probe.data import read_probe_corpus
from s3prl_ekd.probe.features import UpstreamSpec, cached_features
from s3prl_ekd.probe.linear import fixed_split
from s3prl_ekd.probe.stats import score


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("work", help="a demo work folder (holds corpus/ and students/)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[5000, 10000, 20000, 40000, 0])
    parser.add_argument("--draws", type=int, default=3)
    parser.add_argument("--rows", nargs="*", default=None, help="row names (default: all)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    work = Path(args.work)
    methods = load_settings("default")["methods"]
    corpus = read_probe_corpus(str(work / "corpus"), max_train_frames=None, seed=0)
    f = corpus.frames
    total = len(f["train"].label)
    report = {"train_positions": total, "rows": {}}
    with threadpool_limits(1):
        for method in methods:
            if args.rows and method["name"] not in args.rows:
                continue
            row = {"name": method["name"], "upstream": "fbank" if method["name"] == "fbank" else "ekd_student"}
            ckpt = _ckpt(work, row)
            feats = cached_features(UpstreamSpec(row["name"], row["upstream"], ckpt), corpus, work / "probes" / "features")
            out = {}
            for size in args.sizes:
                n = size or total
                errors, seconds = [], []
                for r in range(args.draws if n < total else 1):
                    keep = np.sort(np.random.default_rng(r).choice(total, n, replace=False))
                    t = time.process_time()
                    o = fixed_split(feats.frames["train"][keep], f["train"].label[keep], feats.frames["dev"],
                                    f["dev"].label, feats.frames["test"], f["test"].label, f["test"].utterance)
                    seconds.append(time.process_time() - t)
                    errors.append(score(o.correct, o.total, error=True))
                out[str(size or "all")] = {"error_mean": float(np.mean(errors)), "error_min": float(np.min(errors)),
                                           "error_max": float(np.max(errors)), "cpu_seconds": float(np.mean(seconds))}
                print(f"{row['name']:>22} {str(size or 'all'):>6}: PR frame error {np.mean(errors):5.1f} % "
                      f"[{np.min(errors):.1f}, {np.max(errors):.1f}] over {len(errors)} draw(s), "
                      f"{np.mean(seconds):.1f} s CPU", flush=True)
            report["rows"][row["name"]] = out
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")


def _ckpt(work: Path, row: dict):
    """The checkpoint of a demo row (students/<name>/ holds it; fbank has none)."""
    if row["upstream"] == "fbank":
        return None
    record = work / "students" / row["name"] / "demo_key.json"
    if record.is_file():
        return json.loads(record.read_text())["ckpt"]
    path = work / "students" / row["name"] / "student.ckpt"
    return str(path) if path.is_file() else None


if __name__ == "__main__":
    main()
