"""The whole demo experiment, step after step, timed: ``run_demo(settings, work_dir)``."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Dict, List, Mapping

import numpy as np
import torch

from s3prl_ekd.demo.probing import probe_step
from s3prl_ekd.demo.report import markdown_table, write_report
from s3prl_ekd.demo.settings import DemoSettingsError
from s3prl_ekd.demo.steps import (
    DemoDirs,
    corpus_step,
    evaluate_step,
    results_of,
    students_step,
    teachers_step,
    upstreams,
)
from s3prl_ekd.probe.report import probe_markdown


def run_demo(settings: Mapping, work_dir: os.PathLike | str) -> Dict:
    """Corpus, teachers, students (per seed), downstream runs, probes, report; each step resumes from its outputs."""
    dirs = DemoDirs(Path(work_dir).resolve())
    dirs.work.mkdir(parents=True, exist_ok=True)
    threads_before = torch.get_num_threads()
    if settings["threads"]:
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
        timing[name] = round(timing.get(name, 0.0) + time.time() - t, 1)
        print(f"[demo] {name}: {time.time() - t:.0f} s")
        return out

    corpus_root = timed("corpus", corpus_step, settings, dirs)
    teachers = timed("teachers", teachers_step, settings, dirs, corpus_root)
    rows_per_seed: List[List[Dict]] = []
    for k in range(seed_count(settings)):
        # the corpus and the teachers stay; distillation (and the untrained floor) draw seed + k
        run_settings, run_dirs = {**settings, "seed": int(settings["seed"]) + k}, dirs.for_seed(k)
        students = timed("students", students_step, run_settings, run_dirs, corpus_root, teachers)
        rows = upstreams(run_settings, students, teachers)
        if k > 0:  # rows no seed changes (fbank, teachers) were scored with the first seed
            rows = [r for r in rows if r["upstream"] == "ekd_student"]
        rows_per_seed.append(timed("downstream", evaluate_step, run_settings, run_dirs, corpus_root, rows))
    probes = None
    if settings["probes"]["enabled"]:
        probes = timed("probes", probe_step, settings, dirs.probes, corpus_root, rows_per_seed)
    timing["total"] = round(time.time() - start, 1)
    results = results_of(settings, pool_seeds(rows_per_seed), timing)
    if probes is not None:
        results["probes"] = probes
    paths = write_report(results, dirs.results)
    if probes is not None:
        print(probe_markdown(probes))
    print(markdown_table(results))
    print(f"[demo] wrote {paths['markdown']}, {paths['json']}, {paths['chart']}")
    print(f"[demo] total time {timing['total'] / 60:.1f} min")
    return results


def seed_count(settings: Mapping) -> int:
    """How many distillation seeds the demo runs (setting ``seeds``, at least 1)."""
    n = settings["seeds"]
    if not isinstance(n, int) or n < 1:
        raise DemoSettingsError(f"demo setting 'seeds' must be a whole number >= 1, got {n!r}")
    return n


def pool_seeds(rows_per_seed: List[List[Dict]]) -> List[Dict]:
    """One row per method: the mean over seeds of each metric, the seeds' values beside it."""
    if len(rows_per_seed) == 1:
        return rows_per_seed[0]
    pooled = []
    for row in rows_per_seed[0]:
        runs = [r for rows in rows_per_seed for r in rows if r["name"] == row["name"]]
        per_seed = {t: [r["metrics"][t] for r in runs if t in r["metrics"]] for t in row["metrics"]}
        pooled.append({**row, "metrics": {t: float(np.mean(v)) for t, v in per_seed.items()},
                       "metrics_per_seed": per_seed})
    return pooled
