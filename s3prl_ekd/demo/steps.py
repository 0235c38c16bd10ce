"""The demo experiment as steps: corpus, teachers, students, downstream runs, report.

Each step writes its outputs under one work folder and skips when they exist for the same
settings, so an interrupted demo resumes where it stopped. Every step reuses the project's own
entry points: ``make_corpus``, ``tiny_teachers`` + s3prl's model classes, s3prl's pretraining
``Runner`` (``-u ekd``), and s3prl's downstream runner through ``run_mini_task``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Optional

import torch
from tqdm import tqdm

from s3prl_ekd.demo.report import TASK_METRICS, columns
from s3prl_ekd.demo.settings import fingerprint
from s3prl_ekd.distill.student import EKDStudent, make_student_config
from s3prl_ekd.distill.student_checkpoint import save_student
from s3prl_ekd.distill.targets import TargetPlan

# Our task names -> run_mini_task's.
MINI_TASKS = {"PR": "pr", "SID": "sid", "ER": "er", "ASR": "asr"}

DESCRIPTIONS = {
    "fbank": "log mel filterbank (s3prl's fbank): a floor",
    "untrained": "student at random init, not distilled: a floor",
}


@dataclass(frozen=True)
class DemoDirs:
    """Where the demo keeps what it makes (all under one work folder)."""

    work: Path
    seed_index: int = 0  # the k-th distillation seed: 0 in the work folder itself, k in seed<k>/

    def for_seed(self, k: int) -> "DemoDirs":
        """The folders of the ``k``-th distillation seed (students and their downstream runs)."""
        return DemoDirs(self.work, k)

    @property
    def _seed_root(self) -> Path:
        return self.work if self.seed_index == 0 else self.work / f"seed{self.seed_index}"

    @property
    def corpus(self) -> Path:
        return self.work / "corpus"

    @property
    def teachers(self) -> Path:
        return self.work / "teachers"

    @property
    def students(self) -> Path:
        return self._seed_root / "students"

    @property
    def downstream(self) -> Path:
        return self._seed_root / "downstream"

    @property
    def probes(self) -> Path:
        return self.work / "probes"

    @property
    def results(self) -> Path:
        return self.work


def describe(method: Mapping) -> str:
    """One line saying what a row of the table is."""
    if method["name"] in DESCRIPTIONS:
        return DESCRIPTIONS[method["name"]]
    scheme = method.get("scheme")
    teachers = " + ".join(method.get("teachers", []))
    if scheme == "single":
        return f"distilled from {teachers} alone (DistilHuBERT)"
    if method.get("kind") == "teacher":
        return f"the teacher {method['name']} itself"
    words = {"average": "layerwise average", "concat": "layerwise concatenation", "multihead": "a head per teacher"}
    return f"EKD, {words.get(scheme, scheme)} of {teachers}"


# ----- step 1: corpus -----------------------------------------------------------------------
def corpus_step(settings: Mapping, dirs: DemoDirs) -> str:
    """Make (or reuse) the built-in corpus; returns its root folder."""
    from s3prl_ekd.corpus import make_corpus

    paths = make_corpus(str(dirs.corpus), size=settings["corpus"]["size"], seed=int(settings["seed"]),
                        progress=lambda msg: tqdm.write(msg))
    return paths.root


# ----- step 2: teachers ---------------------------------------------------------------------
def teachers_step(settings: Mapping, dirs: DemoDirs, corpus_root: str) -> Dict[str, Dict]:
    """Train (or reuse) the tiny teachers; name -> teacher spec."""
    from s3prl_ekd.demo.make_teachers import make_teachers

    return make_teachers(settings["teachers"], corpus_root, dirs.teachers, int(settings["seed"]))


# ----- step 3: students ---------------------------------------------------------------------
def student_config(settings: Mapping) -> Dict:
    """The students' body config (s3prl distiller keys), checked."""
    return make_student_config(settings["student"]["config"])


def untrained_student(settings: Mapping, dirs: DemoDirs, teacher_dims: Mapping[str, int]) -> Path:
    """A student at random init (a floor): the same body, never distilled."""
    path = dirs.students / "untrained" / "student.ckpt"
    if not path.is_file():
        torch.manual_seed(int(settings["seed"]))
        plan = TargetPlan.from_scheme("average", dict(teacher_dims), settings["student"]["layers"])
        save_student(EKDStudent(student_config(settings), plan), path, step=0)
    return path


def students_step(
    settings: Mapping, dirs: DemoDirs, corpus_root: str, teachers: Mapping[str, Dict]
) -> Dict[str, Path]:
    """Pretrain (or reuse) one student per distilled method; method name -> checkpoint."""
    from s3prl_ekd.demo.pretraining import pretrain_student, teacher_dims

    dims = teacher_dims(settings)
    out: Dict[str, Path] = {}
    methods = [m for m in settings["methods"] if m.get("scheme")]
    bar = tqdm(methods, desc="students", dynamic_ncols=True)
    for method in bar:
        bar.set_postfix_str(method["name"])
        out[method["name"]] = pretrain_student(settings, method, corpus_root, teachers,
                                               dirs.students / method["name"])
    out["untrained"] = untrained_student(settings, dirs, dims)
    return out


# ----- step 4: downstream -------------------------------------------------------------------
def upstreams(settings: Mapping, students: Mapping[str, Path], teachers: Mapping[str, Dict]) -> List[Dict]:
    """The rows to evaluate: name, kind, description, s3prl upstream name and checkpoint."""
    rows = []
    for method in settings["methods"]:
        name = method["name"]
        if name == "fbank":
            rows.append({"name": name, "kind": method["kind"], "upstream": "fbank", "ckpt": None})
        else:
            rows.append({"name": name, "kind": method["kind"], "upstream": "ekd_student", "ckpt": str(students[name])})
        rows[-1]["description"] = describe(method)
    if settings["evaluate_teachers"]:
        for name, spec in teachers.items():
            rows.append({"name": f"teacher-{name}", "kind": "teacher", "upstream": spec["upstream"],
                         "ckpt": spec["ckpt"], "description": f"the teacher {name} itself ({spec['upstream']})"})
    return rows


def downstream_overrides(settings: Mapping, task: str) -> Optional[str]:
    """Extra s3prl ``-o`` overrides the settings give for ``task`` (none by default)."""
    extra = (settings["downstream"]["overrides"] or {}).get(task)
    return str(extra) if extra else None


def evaluate_step(settings: Mapping, dirs: DemoDirs, corpus_root: str, rows: List[Dict]) -> List[Dict]:
    """Score every row on every task with s3prl's downstream harness; fills ``row["metrics"]``."""
    from s3prl_ekd.superb.runs import run_mini_task

    tasks = list(settings["downstream"]["tasks"])
    jobs = [(row, task) for row in rows for task in tasks]
    bar = tqdm(jobs, desc="downstream", dynamic_ncols=True)
    for row, task in bar:
        bar.set_postfix_str(f"{row['name']} / {task}")
        expdir = dirs.downstream / row["name"] / task
        steps = int(settings["downstream"]["steps"][task])
        key = fingerprint(row["upstream"], row["ckpt"], _mtime(row["ckpt"]), steps, downstream_overrides(settings, task))
        stamp = expdir / "demo_key.json"
        force = stamp.is_file() and json.loads(stamp.read_text()).get("key") != key
        # in process: one Python for all runs, not two fresh ones (~10 s of imports each) per run
        result = run_mini_task(MINI_TASKS[task], row["upstream"], row["ckpt"], corpus_root, str(expdir),
                               device="cpu", overrides=downstream_overrides(settings, task), force=force,
                               steps=steps, threads=int(settings["threads"]), in_process=True)
        stamp.write_text(json.dumps({"key": key}) + "\n")
        row.setdefault("metrics", {})[task] = float(result["value"])
        for name, value in (result.get("extra") or {}).items():
            if f"{task}-{name.upper()}" in TASK_METRICS:
                row["metrics"][f"{task}-{name.upper()}"] = float(value)
        row.setdefault("seconds", {})[task] = float(result.get("train_seconds", 0)) + float(result.get("eval_seconds", 0))
    return rows


def _mtime(path: Optional[str]) -> Optional[float]:
    return Path(path).stat().st_mtime if path and Path(path).is_file() else None


def results_of(settings: Mapping, rows: List[Dict], timing: Mapping[str, float]) -> Dict:
    """The plain-data results written to ``results.json``."""
    tasks = columns(settings["downstream"]["tasks"])
    return {
        "preset": settings["preset"],
        "setup": setup_text(settings),
        "tasks": {t: TASK_METRICS[t] for t in tasks},
        "rows": [{k: r[k] for k in ("name", "kind", "description", "upstream", "metrics", "metrics_per_seed")
                  if k in r} for r in rows],
        "seeds": [int(settings["seed"]) + k for k in range(int(settings["seeds"]))],
        "timing": dict(timing),
        "settings": dict(settings),
    }


def setup_text(settings: Mapping) -> str:
    """A paragraph saying what was run."""
    t = settings["teachers"]
    m = t["model"]
    return (
        f"Corpus `{settings['corpus']['size']}` (seed {settings['seed']}). Teachers: "
        + ", ".join(f"{n} ({e['upstream']}, trained on {e['objective']}"
                    f"{' from distorted audio' if e.get('distortions', {}).get('enabled') else ''})"
                    for n, e in t["roster"].items())
        + f"; each {m['encoder_layers']} layers x {m['encoder_embed_dim']} dims, {t['training']['steps']} steps. "
        f"Students: 2-layer DistilHuBERT bodies predicting teacher layers {settings['student']['layers']}, "
        f"{settings['pretrain']['steps']} distillation steps each"
        + (f", distilled with {settings['seeds']} seeds ({settings['seed']} to {settings['seed'] + settings['seeds'] - 1}), "
           "the report pooling them" if int(settings["seeds"]) > 1 else "")
        + ". Downstream: s3prl's mini task configs, "
        f"steps {dict(settings['downstream']['steps'])}."
    )
