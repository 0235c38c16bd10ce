"""``s3prl-ekd superb-mini``: the four mini SUPERB tasks for one upstream on the built-in corpus.

    s3prl-ekd superb-mini --upstream fbank --out result/superb_mini/fbank
    s3prl-ekd superb-mini --upstream ekd_student --ckpt student.ckpt --out result/superb_mini/ekd

Makes (or reuses) the corpus, runs PR, SID, ER and ASR through ``run/run_downstream.py``
(train, then evaluate), prints the table and the wall time. Finished tasks are skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import time

from s3prl_ekd.corpus.plan import SIZES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``superb-mini``."""
    parser.add_argument("--upstream", required=True, help="s3prl upstream name (fbank, ekd_student, ...)")
    parser.add_argument("--ckpt", help="upstream checkpoint (-k), e.g. a student checkpoint")
    parser.add_argument("--out", required=True, help="folder for the four experiment folders")
    parser.add_argument("--corpus", default="data/corpus", help="corpus folder (made if missing)")
    parser.add_argument("--size", default="demo", choices=sorted(SIZES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tasks", default="pr,sid,er,asr", help="comma-separated subset")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="OMP threads per run")


def run(args: argparse.Namespace) -> int:
    """Run the tasks, then print the results table."""
    from s3prl_ekd.corpus import make_corpus
    from s3prl_ekd.superb.results import results_markdown
    from s3prl_ekd.superb.runs import TASKS, run_mini_task

    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise SystemExit(f"superb-mini: unknown task(s) {unknown}: choose from {sorted(TASKS)}")
    corpus = make_corpus(args.corpus, size=args.size, seed=args.seed)
    start = time.time()
    rows = []
    for task in tasks:
        t0 = time.time()
        print(f"[superb-mini] {task}: training and evaluating {args.upstream} ...", flush=True)
        rows.append(run_mini_task(task, args.upstream, args.ckpt, corpus.root,
                                  os.path.join(args.out, task), device=args.device,
                                  threads=args.threads))
        print(f"[superb-mini] {task}: {rows[-1]['metric']} = {rows[-1]['value']:.2f} "
              f"({time.time() - t0:.0f} s)", flush=True)
    total = time.time() - start
    print(results_markdown(rows), end="")
    print(f"[superb-mini] {len(tasks)} task(s) in {total:.0f} s")
    with open(os.path.join(args.out, "timing.json"), "w", encoding="utf-8") as f:
        json.dump({"tasks": tasks, "upstream": args.upstream, "seconds": round(total, 1)}, f)
    return 0
