"""The whole demo experiment, step after step, timed: ``run_demo(settings, work_dir)``."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Dict, Mapping

import torch

from .report import markdown_table, write_report
from .steps import (DemoDirs, corpus_step, evaluate_step, results_of, students_step, teachers_step,
                    upstreams)


def run_demo(settings: Mapping, work_dir: os.PathLike | str) -> Dict:
    """Corpus, teachers, students, downstream runs, report; each step resumes from its outputs."""
    dirs = DemoDirs(Path(work_dir).resolve())
    dirs.work.mkdir(parents=True, exist_ok=True)
    threads_before = torch.get_num_threads()
    if settings.get("threads"):
        # one thread: on 2 shared cores, spinning OpenMP threads of several processes slow all down
        torch.set_num_threads(int(settings["threads"]))
    try:
        return _run_steps(settings, dirs)
    finally:
        torch.set_num_threads(threads_before)


def _run_steps(settings: Mapping, dirs: DemoDirs) -> Dict:
    timing: Dict[str, float] = {}
    start = time.time()

    def timed(name, fn, *args):
        t = time.time()
        out = fn(*args)
        timing[name] = round(time.time() - t, 1)
        print(f"[demo] {name}: {timing[name]:.0f} s")
        return out

    corpus_root = timed("corpus", corpus_step, settings, dirs)
    teachers = timed("teachers", teachers_step, settings, dirs, corpus_root)
    students = timed("students", students_step, settings, dirs, corpus_root, teachers)
    rows = timed("downstream", evaluate_step, settings, dirs, corpus_root, upstreams(settings, students, teachers))
    timing["total"] = round(time.time() - start, 1)
    results = results_of(settings, rows, timing)
    paths = write_report(results, dirs.results)
    print(markdown_table(results))
    print(f"[demo] wrote {paths['markdown']}, {paths['json']}, {paths['chart']}")
    print(f"[demo] total time {timing['total'] / 60:.1f} min")
    return results
