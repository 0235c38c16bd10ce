"""Score upstreams with linear probes and compare them: ``run_probes(runs, corpus, settings)``.

``runs`` maps each row name to its upstream(s): one per distillation seed. Every upstream is
probed on the same items with the same folds and the same bootstrap draws, so scores are
comparable and differences paired. Which differences are reported: each ensemble student
against the best single-teacher student of the task, and the ensemble schemes against each
other (rows without kinds: every pair).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import asdict, dataclass
from itertools import combinations
from typing import TYPE_CHECKING, Dict, Iterator, List, Literal, Mapping, Optional, Sequence, Tuple

import numpy as np
from threadpoolctl import threadpool_limits

from s3prl_ekd.config.reader import from_mapping, setting
from s3prl_ekd.probe import stats
from s3prl_ekd.probe.data import ProbeCorpus, UpstreamSpec
from s3prl_ekd.probe.linear import C_GRID, Outcome, cross_validated, fixed_split, group_folds, stratified_folds

if TYPE_CHECKING:  # features imports torch: not needed to build the command line
    from s3prl_ekd.probe.features import Features

TASKS: Dict[str, Dict[str, object]] = {
    "PR": {"metric": "frame error %", "higher_is_better": False,
           "protocol": "phone of every 20 ms position of test-clean (exact alignments); probe trained on "
                       "a fixed subsample of train-clean-100 positions, C chosen on dev-clean; "
                       "bootstrap over test utterances"},
    "SID": {"metric": "accuracy %", "higher_is_better": True,
            "protocol": "speaker of every VoxCeleb1 utterance (iden splits pooled), mean-pooled features, "
                        "stratified k-fold cross-validation, C chosen on a held-out quarter of each fold's "
                        "training utterances; bootstrap over utterances"},
    "ER": {"metric": "accuracy %", "higher_is_better": True,
           "protocol": "emotion of every IEMOCAP utterance, mean-pooled features, leave-one-session-out "
                       "(5 folds pooled), C chosen on another held-out session; bootstrap over utterances"},
}


TASK_NAMES = tuple(TASKS)


@dataclass(frozen=True)
class ProbeSettings:
    """How the probes run (defaults: the demo's)."""

    max_train_frames: Optional[int] = setting(20000, low=1)  # PR training positions (None: all)
    folds: int = setting(5, low=2)  # SID cross-validation folds
    grid: Tuple[float, ...] = setting(C_GRID, low=0.0, low_open=True, nonempty=True)
    draws: int = setting(stats.DRAWS, low=1)
    seed: int = 0
    layers: Optional[Tuple[int, ...]] = setting(None, low=0, nonempty=True)  # hidden states concatenated (None: all)
    threads: int = setting(1, low=1)
    workers: int = setting(1, low=1)  # processes at once, each extracting and probing one upstream
    tasks: Tuple[Literal[TASK_NAMES], ...] = TASK_NAMES

    @classmethod
    def from_mapping(cls, values: Mapping) -> "ProbeSettings":
        """Settings from a plain mapping; an unknown key or a bad value is an error naming it."""
        return from_mapping(cls, values, "probes", ValueError)


def probe_features(features: Features, corpus: ProbeCorpus, settings: ProbeSettings) -> Dict[str, Outcome]:
    """Each task's per-item outcome for one upstream's features."""
    out: Dict[str, Outcome] = {}
    grid, seed = settings.grid, settings.seed
    if "PR" in settings.tasks:
        f, fr = corpus.frames, features.frames
        out["PR"] = fixed_split(fr["train"], f["train"].label, fr["dev"], f["dev"].label,
                                fr["test"], f["test"].label, f["test"].utterance, grid)
    if "SID" in settings.tasks:
        s = corpus.speakers
        out["SID"] = cross_validated(features.pooled[s.file], s.label, stratified_folds(s.label, settings.folds, seed),
                                     None, seed, grid)
    if "ER" in settings.tasks:
        e = corpus.emotions
        out["ER"] = cross_validated(features.pooled[e.file], e.label, group_folds(e.group), e.group, seed, grid)
    return out


def probe_upstream(spec: UpstreamSpec, corpus: ProbeCorpus, settings: ProbeSettings,
                   cache_dir: Optional[str] = None) -> Tuple[Dict[str, Outcome], Dict[str, float]]:
    """One upstream's outcomes (features from ``cache_dir`` or extracted), and the seconds each part took."""
    from s3prl_ekd.probe.features import cached_features

    t = time.time()
    features = cached_features(spec, corpus, cache_dir, settings.layers)
    t_features = time.time() - t
    outcome = probe_features(features, corpus, settings)
    return outcome, {"features": t_features, "probes": time.time() - t - t_features}


def _probe_in_worker(spec: UpstreamSpec, corpus: ProbeCorpus, settings: ProbeSettings,
                     cache_dir: Optional[str]) -> Tuple[Dict[str, Outcome], Dict[str, float]]:
    import torch

    torch.set_num_threads(settings.threads)
    with threadpool_limits(settings.threads):
        return probe_upstream(spec, corpus, settings, cache_dir)


def _jobs(specs: Sequence[UpstreamSpec], corpus: ProbeCorpus, settings: ProbeSettings,
          cache_dir: Optional[str]) -> Iterator[Tuple[Dict[str, Outcome], Dict[str, float]]]:
    """:func:`probe_upstream` of each spec, in order: ``settings.workers`` processes at once (one
    upstream a process, features then probes, so two cores keep busy to the end), else here."""
    if settings.workers > 1 and len(specs) > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor
        from concurrent.futures.process import BrokenProcessPool

        results: List[Tuple[Dict[str, Outcome], Dict[str, float]]] = []
        # spawn: a fresh interpreter per worker (forking a process that holds torch's threads is unsafe)
        try:
            with ProcessPoolExecutor(min(settings.workers, len(specs)),
                                     mp_context=multiprocessing.get_context("spawn")) as pool:
                futures = [pool.submit(_probe_in_worker, s, corpus, settings, cache_dir) for s in specs]
                try:
                    for future in futures:
                        results.append(future.result())
                        yield results[-1]
                finally:  # an error (or the caller stopping): the queued upstreams are not started
                    for future in futures:
                        future.cancel()
                return
        except BrokenProcessPool as e:
            if results:  # a worker died mid-way: not a start-up problem, say so
                raise
            # e.g. a script without `if __name__ == "__main__":` cannot spawn: run in this process
            warnings.warn(f"probing in {settings.workers} processes failed ({type(e).__name__}); "
                          "probing in this process instead")
    for spec in specs:
        yield _probe_in_worker(spec, corpus, settings, cache_dir)


def run_probes(runs: Mapping[str, Sequence[UpstreamSpec]], corpus: ProbeCorpus, settings: ProbeSettings,
               cache_dir: Optional[str] = None, say=print) -> Dict:
    """Features (cached), probes, intervals and paired differences of every row; plain data.
    ``timing`` holds the seconds spent on features and on probes, summed over workers."""
    import torch

    timing = {"features": 0.0, "probes": 0.0}
    outcomes: Dict[str, List[Dict[str, Outcome]]] = {name: [] for name in runs}
    threads_before = torch.get_num_threads()
    specs = [(name, spec) for name, row in runs.items() for spec in row]
    try:
        done = _jobs([spec for _, spec in specs], corpus, settings, cache_dir)
        for (name, _), (outcome, seconds) in zip(specs, done):
            outcomes[name].append(outcome)
            for part, value in seconds.items():
                timing[part] += value
            if len(outcomes[name]) == len(runs[name]):
                say(f"[probe] {name}: " + ", ".join(
                    f"{task} {np.mean([_point(o[task], task) for o in outcomes[name]]):.1f}"
                    for task in settings.tasks))
    finally:
        torch.set_num_threads(threads_before)
    kinds = {name: specs[0].kind for name, specs in runs.items()}
    result = summarise(outcomes, kinds, settings)
    result["timing"] = {k: round(v, 1) for k, v in timing.items()}
    return result


def _point(outcome: Outcome, task: str) -> float:
    return stats.score(outcome.correct, outcome.total, error=not TASKS[task]["higher_is_better"])


def summarise(outcomes: Mapping[str, Sequence[Mapping[str, Outcome]]], kinds: Mapping[str, str],
              settings: ProbeSettings) -> Dict:
    """Scores with intervals per row and task, the paired differences, and a reading of them."""
    rows = [{"name": n, "kind": kinds.get(n, ""), "scores": {}} for n in outcomes]
    draws_of: Dict[Tuple[str, str], np.ndarray] = {}
    points: Dict[Tuple[str, str], List[float]] = {}
    for t_index, task in enumerate(settings.tasks):
        error = not TASKS[task]["higher_is_better"]
        first = next(iter(outcomes.values()))[0][task]
        idx = stats.draws(len(first.total), settings.draws, seed=settings.seed * 1000 + t_index)
        for row in rows:
            runs = outcomes[row["name"]]
            if any(len(o[task].total) != len(first.total) for o in runs):
                raise ValueError(f"{row['name']}: {task} was scored on other items than the other rows")
            per_seed = [_point(o[task], task) for o in runs]
            resampled = np.mean([stats.resampled(o[task].correct, o[task].total, idx, error) for o in runs], axis=0)
            draws_of[row["name"], task], points[row["name"], task] = resampled, per_seed
            entry = stats.summary(float(np.mean(per_seed)), resampled)
            entry["per_seed"] = per_seed
            entry["c"] = [list(o[task].chosen_c) for o in runs]
            row["scores"][task] = entry
    comparisons = []
    for task in settings.tasks:
        for a, b, why in pairs_to_compare(rows, task):
            diff = stats.paired_difference(points[a, task], points[b, task], draws_of[a, task], draws_of[b, task])
            better = diff["value"] > 0 if TASKS[task]["higher_is_better"] else diff["value"] < 0
            signs = np.sign(np.array(points[a, task]) - np.array(points[b, task]))
            comparisons.append({"task": task, "a": a, "b": b, "why": why, **diff, "a_better": bool(better),
                                "seeds_same_sign": int((signs == np.sign(diff["value"])).sum()),
                                "seeds": len(signs)})
    return {
        "tasks": {t: {k: v for k, v in TASKS[t].items()} for t in settings.tasks},
        "settings": {**asdict(settings), "items": {t: len(next(iter(outcomes.values()))[0][t].total)
                                                   for t in settings.tasks}},
        "rows": rows,
        "comparisons": comparisons,
    }


def pairs_to_compare(rows: Sequence[Mapping], task: str) -> List[Tuple[str, str, str]]:
    """(a, b, why) for ``task``: each ensemble vs the best single-teacher student, and the
    schemes against each other; every pair when no row is an ensemble."""
    higher = bool(TASKS[task]["higher_is_better"])
    singles = [r for r in rows if r["kind"] == "single"]
    ensembles = [r["name"] for r in rows if r["kind"] == "ensemble"]
    if not ensembles:
        return [(a["name"], b["name"], "pair") for a, b in combinations(rows, 2)]
    out = []
    if singles:
        key = lambda r: r["scores"][task]["value"]  # noqa: E731
        best = (max if higher else min)(singles, key=key)["name"]
        out += [(e, best, "ensemble vs best single-teacher student") for e in ensembles]
    out += [(a, b, "scheme vs scheme") for a, b in combinations(ensembles, 2)]
    return out
