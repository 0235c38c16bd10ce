"""SUPERB PR / SID / ER / ASR through s3prl's own runner, on the built-in corpus or real data.

For the demo and the tests (all on CPU, all through ``run/run_downstream.py`` in a subprocess)::

    from s3prl_ekd.corpus import make_corpus
    from s3prl_ekd.superb.runs import run_mini_task, collect_results, results_markdown
    corpus = make_corpus("data/corpus", size="demo", seed=0)          # -> CorpusPaths
    r = run_mini_task("sid", "fbank", None, corpus.root, "result/superb/fbank/sid")
    r = run_mini_task("pr", "ekd_student", "student.ckpt", corpus.root, "result/superb/ekd/pr")
    rows = collect_results(["result/superb"])                          # every result below
    print(results_markdown(rows))

* ``run_mini_task(task, upstream, ckpt, corpus_dir, expdir, device="cpu", ...) -> dict``:
  writes ``expdir/config.yaml`` (the task's ``downstream_configs/<task>_mini.yaml`` with the
  corpus paths filled in), trains (``-m train``), evaluates the dev-best checkpoint (``-m evaluate
  -e <ckpt> -t <test split>``), and writes ``expdir/superb_result.json``: ``task``, ``metric``
  (``per``, ``acc``, ``acc``, ``wer``), ``value`` in percent, ``raw`` (as the task prints it),
  ``chance`` (classification tasks), timings. Resumable: a finished result is returned as is,
  finished training is not repeated.
* ``collect_results(paths) -> list of rows``: the results under the given experiment folders.
* ``TASKS``: name -> :class:`Task` (s3prl downstream, configs, metric, test split).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence

import yaml

from s3prl_ekd.config.resources import DOWNSTREAM, resolve_shipped_paths, shipped_dir
from s3prl_ekd.io.atomic import atomic_write_text
from s3prl_ekd.io.checkpoint_names import checkpoint_name, numbered_checkpoints
from s3prl_ekd.io.safe_globals import allowed_globals
from s3prl_ekd.superb.results import RESULT_FILE, collect_results, results_markdown  # noqa: F401 (public here too)

CONFIG_DIR = str(shipped_dir(DOWNSTREAM))
# s3prl's run_downstream.py with our upstreams registered, as a module (works where installed)
RUN_DOWNSTREAM = ["-m", "s3prl_ekd.cli", "downstream"]


@dataclass(frozen=True)
class Task:
    """One SUPERB task as s3prl runs it."""

    name: str
    downstream: str  # s3prl's -d
    metric: str  # the name the task prints: "<split> <metric>: <value>"
    test_split: str  # s3prl's -t for the final evaluation
    dev_split: str
    higher_better: bool
    percent: bool  # the printed value is already in percent (asr's WER)
    corpus_keys: Dict[str, str]  # config key path -> corpus-relative path
    project_keys: Sequence[str]  # config key paths holding project-relative files
    # more metrics the task prints, reported beside the main one: our name -> printed name
    # (asr's character error rate: informative where the WER of a small model is still ~100%)
    extra_metrics: Mapping[str, str] = field(default_factory=dict)

    def config_path(self, mini: bool = True) -> str:
        return os.path.join(CONFIG_DIR, f"{self.name}{'_mini' if mini else ''}.yaml")


TASKS: Dict[str, Task] = {
    "pr": Task("pr", "ctc", "per", "test", "dev", False, False,
               {"downstream_expert.corpus.path": "LibriSpeech",
                "downstream_expert.corpus.lexicon": "lexicon/librispeech-lexicon.txt"},
               ["downstream_expert.text.vocab_file"]),
    "sid": Task("sid", "voxceleb1", "acc", "test", "dev", True, False,
                {"downstream_expert.datarc.file_path": "VoxCeleb1",
                 "downstream_expert.datarc.meta_data": "VoxCeleb1/iden_split.txt"}, []),
    "er": Task("er", "emotion", "acc", "test", "dev", True, False,
               {"downstream_expert.datarc.root": "IEMOCAP",
                "downstream_expert.datarc.meta_data": "IEMOCAP/meta_data"}, []),
    "asr": Task("asr", "asr", "wer", "test-clean", "dev-clean", False, True,
                {"downstream_expert.datarc.libri_root": "LibriSpeech",
                 "downstream_expert.datarc.bucket_file": "len_for_bucket"},
                ["downstream_expert.datarc.dict_path"], {"cer": "uer"}),
}


class SuperbError(RuntimeError):
    """A task failed to train or evaluate, or a result cannot be read."""


def _get_task(task: str) -> Task:
    if task not in TASKS:
        raise SuperbError(f"unknown task {task!r}: choose one of {sorted(TASKS)}")
    return TASKS[task]


def _set(config: Dict, dotted: str, value) -> None:
    *parents, last = dotted.split(".")
    for key in parents:
        config = config.setdefault(key, {})
    config[last] = value


def _get(config: Dict, dotted: str):
    for key in dotted.split("."):
        config = config[key]
    return config


def fill_config(task: str, corpus_dir: str, config: Optional[str] = None) -> Dict:
    """The task's mini config (or ``config``) with absolute corpus and project file paths."""
    t = _get_task(task)
    path = config or t.config_path(mini=True)
    with open(path, encoding="utf-8") as f:
        cfg = yaml.safe_load(f)
    root = os.path.abspath(corpus_dir)
    for key, rel in t.corpus_keys.items():
        value = os.path.join(root, rel)
        _set(cfg, key, [value] if isinstance(_get(cfg, key), list) else value)
    for key in t.project_keys:
        _set(cfg, key, resolve_shipped_paths(_get(cfg, key)))
    return cfg


def _run(flags: List[str], log_path: str, threads: int) -> None:
    # One intra-op thread by default: on 2 shared cores, two spinning OpenMP threads per process
    # made an LSTM step 10x slower than one thread did (measured while other jobs ran).
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    cmd = [sys.executable] + RUN_DOWNSTREAM + list(flags)
    with open(log_path, "w", encoding="utf-8") as log:
        log.write("$ " + " ".join(cmd) + "\n")
        log.flush()
        proc = subprocess.run(cmd, cwd=os.path.dirname(log_path), stdout=log, stderr=subprocess.STDOUT, env=env)
    if proc.returncode != 0:
        with open(log_path, encoding="utf-8", errors="replace") as f:
            tail = f.read()[-3000:]
        raise SuperbError(f"{' '.join(flags[:4])}... failed (exit {proc.returncode}); "
                          f"log {log_path}:\n{tail}")


def _run_in_process(flags: List[str], log_path: str, threads: int) -> None:
    """``_run`` without a new Python: s3prl's ``run_downstream.main()`` called here with ``flags``.

    Saves the ~10 s of imports (torch, s3prl's hub, transformers) each subprocess pays, which
    dominates short runs (the demo runs 64). Output goes to ``log_path`` as with a subprocess.
    """
    import contextlib
    import logging

    import torch

    from s3prl_ekd import register
    from s3prl_ekd.io.load_guard import guarded_torch_load
    from s3prl_ekd.s3prl_compat.downstream import in_process_run

    register()
    from s3prl import run_downstream

    threads_before = torch.get_num_threads()
    root = logging.getLogger()
    level = root.level
    with open(log_path, "w", encoding="utf-8") as log:
        log.write("$ run_downstream.py " + " ".join(flags) + "  (in process)\n")
        log.flush()
        handler = logging.StreamHandler(log)
        root.addHandler(handler)  # also makes s3prl's logging.basicConfig() a no-op here
        root.setLevel(logging.INFO)
        try:
            # Runner checkpoints hold their Args (s3prl_compat.checkpoints); sys.argv and builtins.isinstance
            # restored after (s3prl_compat.downstream.in_process_run)
            with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log), contextlib.chdir(os.path.dirname(log_path)), \
                    allowed_globals([argparse.Namespace]), guarded_torch_load(), in_process_run(flags):
                torch.set_num_threads(threads)
                run_downstream.main()
        except (Exception, SystemExit) as e:  # SystemExit: argparse and s3prl's own exits
            import traceback

            log.write(traceback.format_exc())
            log.flush()
            with open(log_path, encoding="utf-8", errors="replace") as f:
                tail = f.read()[-3000:]
            raise SuperbError(f"{' '.join(flags[:4])}... failed in process ({type(e).__name__}: {e}); "
                              f"log {log_path}:\n{tail}") from e
        finally:
            torch.set_num_threads(threads_before)
            root.removeHandler(handler)
            root.setLevel(level)


def _states(expdir: str) -> List[str]:
    return [path.name for _, path in numbered_checkpoints(expdir)]


def _eval_checkpoint(expdir: str, task: Task) -> str:
    """SUPERB's protocol: the dev-best checkpoint, or the last one if none was marked best."""
    best = os.path.join(expdir, f"{task.dev_split}-best.ckpt")
    if os.path.isfile(best):
        return best
    states = _states(expdir)
    if not states:
        raise SuperbError(f"{expdir}: no checkpoint to evaluate (training did not save one)")
    return os.path.join(expdir, states[-1])


def parse_metric(log_text: str, split: str, metric: str) -> float:
    """The last ``<split> <metric>: <value>`` line a task printed."""
    found = re.findall(rf"^{re.escape(split)} {re.escape(metric)}: ([-+0-9.eE]+|nan|inf)\s*$",
                       log_text, flags=re.M)
    if not found:
        raise SuperbError(f"no '{split} {metric}: <value>' line in the evaluation output")
    return float(found[-1])


def _read_log(path: str) -> str:
    """An evaluation log's text ("" when there is none)."""
    if not os.path.isfile(path):
        return ""
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()


def _extra_metrics(task: Task, log_text: str) -> Dict[str, float]:
    """The task's extra metrics (percent) from its evaluation output; those it did not print are left out."""
    out = {}
    for name, printed in task.extra_metrics.items():
        try:
            value = parse_metric(log_text, task.test_split, printed)
        except SuperbError:
            continue
        out[name] = value if task.percent else 100.0 * value
    return out


def _chance(task: Task, expdir: str) -> Optional[float]:
    """Accuracy (percent) of always answering the most common test class, for SID and ER."""
    names = {"sid": "test_truth.txt", "er": "test_fold1_truth.txt"}
    path = os.path.join(expdir, names.get(task.name, ""))
    if task.name not in names or not os.path.isfile(path):
        return None
    from collections import Counter

    with open(path, encoding="utf-8") as f:
        labels = [line.split()[-1] for line in f if line.strip()]
    return 100.0 * Counter(labels).most_common(1)[0][1] / len(labels) if labels else None


def run_mini_task(
    task: str,
    upstream: str,
    ckpt: Optional[str],
    corpus_dir: str,
    expdir: str,
    device: str = "cpu",
    config: Optional[str] = None,
    overrides: Optional[str] = None,
    extra_args: Sequence[str] = (),
    force: bool = False,
    steps: Optional[int] = None,
    threads: int = 1,
    in_process: bool = False,
) -> Dict:
    """Train then evaluate one task through run/run_downstream.py; returns the result dict.

    ``steps`` shortens training (tests); ``overrides`` is s3prl's ``-o`` string for training;
    ``threads`` sets OMP/MKL threads of the subprocesses; ``in_process`` runs s3prl's runner in
    this process instead (no import cost per run: what the demo uses for its 64 runs).
    """
    t = _get_task(task)
    expdir = os.path.abspath(expdir)
    result_path = os.path.join(expdir, RESULT_FILE)
    if os.path.isfile(result_path) and not force:
        with open(result_path, encoding="utf-8") as f:
            result = json.load(f)
        if "extra" not in result:  # written before extra metrics were read: read them now
            result["extra"] = _extra_metrics(t, _read_log(os.path.join(expdir, f"evaluate_{t.test_split}.log")))
        return result
    os.makedirs(expdir, exist_ok=True)
    cfg = fill_config(task, corpus_dir, config)
    if steps is not None:  # a shorter run (tests): train `steps`, evaluate and save at the end
        runner = cfg["runner"]
        runner["total_steps"] = runner["eval_step"] = runner["save_step"] = int(steps)
        runner["log_step"] = min(int(runner["log_step"]), int(steps))
    cfg_path = os.path.join(expdir, "config.yaml")
    with open(cfg_path, "w", encoding="utf-8") as f:
        yaml.safe_dump(cfg, f, sort_keys=False)

    total = int(cfg["runner"]["total_steps"])
    run = _run_in_process if in_process else _run
    start = time.time()
    if force or checkpoint_name(total) not in _states(expdir):
        cmd = ["-m", "train", "-u", upstream, "-d", t.downstream, "-c", cfg_path,
                    "-p", expdir, "--device", device, "-a"]
        if ckpt:
            cmd += ["-k", os.path.abspath(ckpt)]
        if overrides:
            cmd += ["-o", overrides]
        run(cmd + list(extra_args), os.path.join(expdir, "train.log"), threads)
    train_s = time.time() - start

    start = time.time()
    eval_ckpt = _eval_checkpoint(expdir, t)
    log_path = os.path.join(expdir, f"evaluate_{t.test_split}.log")
    run(["-m", "evaluate", "-e", eval_ckpt, "-t", t.test_split, "--device", device], log_path, threads)
    log_text = _read_log(log_path)
    raw = parse_metric(log_text, t.test_split, t.metric)
    extra = _extra_metrics(t, log_text)
    result = {
        "task": t.name, "downstream": t.downstream, "upstream": upstream,
        "upstream_ckpt": os.path.abspath(ckpt) if ckpt else None,
        "metric": t.metric, "split": t.test_split, "raw": raw,
        "value": raw if t.percent else 100.0 * raw, "higher_better": t.higher_better, "extra": extra,
        "chance": _chance(t, expdir), "checkpoint": os.path.basename(eval_ckpt),
        "steps": total, "train_seconds": round(train_s, 1),
        "eval_seconds": round(time.time() - start, 1), "expdir": expdir,
    }
    atomic_write_text(result_path, json.dumps(result, indent=1))
    return result
