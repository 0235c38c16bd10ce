"""Distil one demo student through the project's pretraining entry point (s3prl's Runner, ``-u ekd``).

For each method the demo writes the two config files a user would write — the upstream config
(``-g``, as ``upstream_configs/ekd_*.yaml``) and the runner config (``-c``, as
``upstream_configs/pretrain_runner.yaml``) — into the student's folder, then runs
``run/run_pretrain.py``'s ``main`` in this process. The checkpoint it writes loads with
``-u ekd_student -k``.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Dict, List, Mapping

import yaml

from s3prl_ekd.demo.settings import fingerprint
from s3prl_ekd.io import SAMPLE_RATE
from s3prl_ekd.io.checkpoint_names import PREFIX, checkpoint_name


class DemoPretrainError(RuntimeError):
    """Pretraining a demo student did not leave the checkpoint it should."""


def teacher_dims(settings: Mapping) -> Dict[str, int]:
    """Hidden size of every demo teacher (all built at the same size)."""
    dim = int(settings["teachers"]["model"]["encoder_embed_dim"])
    return {name: dim for name in settings["teachers"]["roster"]}


def upstream_config(settings: Mapping, method: Mapping, teachers: Mapping[str, Dict]) -> Dict:
    """The ``-g`` config of one method: its teachers, scheme, student body and crop length."""
    names: List[str] = list(method["teachers"])
    init = settings["student"]["init_from_teacher"]
    # DistilHuBERT starts from its teacher; an ensemble from `init_from_teacher` when it is in it
    start = (init if init in names else names[0]) if init else None
    cfg = {
        "teachers": [dict(teachers[n]) for n in names],
        "targets": {"scheme": method["scheme"], "layers": list(settings["student"]["layers"]),
                    "teacher_weights": None},
        "student": dict(settings["student"]["config"]),
        # WavLM's blocks (gated relative position bias) do not fit the student's: conv only
        "init_from": ({"teacher": start, "layers": teachers[start]["upstream"] != "wavlm_local"}
                      if start else None),
        "task": {"sequence_length": int(float(settings["pretrain"]["crop_seconds"]) * SAMPLE_RATE)},
    }
    cfg.update(copy.deepcopy(dict(settings["pretrain"]["overrides"] or {})))
    return cfg


def runner_config(settings: Mapping, corpus_root: str) -> Dict:
    """The ``-c`` config: the shipped runner config with the demo's steps, batch, lr and data."""
    from s3prl_ekd.pretrain.launch import DEFAULT_RUNNER_CONFIG

    cfg = yaml.safe_load(Path(DEFAULT_RUNNER_CONFIG).read_text())
    p = settings["pretrain"]
    steps = int(p["steps"])
    # s3prl's Runner wants log_step and save_step below total_steps; it always saves the last step
    cfg["runner"].update(total_steps=steps, log_step=max(1, steps // 10), save_step=max(1, steps // 2),
                         max_keep=1, fp16=False)  # fp16 is for GPUs
    cfg["optimizer"]["lr"] = float(p["lr"])
    cfg["pretrain_expert"]["datarc"].update(
        libri_root=str(Path(corpus_root) / "LibriSpeech"),
        file_path=str(Path(corpus_root) / "len_for_bucket"),
        sets=["train-clean-100"], train_batch_size=int(p["batch_size"]), num_workers=0, pin_memory=False,
    )
    return cfg


def pretrain_student(
    settings: Mapping, method: Mapping, corpus_root: str, teachers: Mapping[str, Dict], out_dir: Path
) -> Path:
    """Distil (or reuse) the student of ``method``; returns its checkpoint path."""
    out_dir = Path(out_dir)
    steps = int(settings["pretrain"]["steps"])
    g_cfg = upstream_config(settings, method, teachers)
    c_cfg = runner_config(settings, corpus_root)
    key = fingerprint(g_cfg, c_cfg, settings["seed"], [_mtime(t["ckpt"]) for t in g_cfg["teachers"]])
    record = out_dir / "demo_key.json"
    if record.is_file() and json.loads(record.read_text()).get("key") == key:
        done = Path(json.loads(record.read_text()).get("ckpt", ""))
        if done.is_file():
            return done
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("states-*.ckpt"):  # another setting's run: start afresh
        old.unlink()
    g_path, c_path = out_dir / "upstream_config.yaml", out_dir / "runner_config.yaml"
    g_path.write_text(yaml.safe_dump(g_cfg, sort_keys=False))
    c_path.write_text(yaml.safe_dump(c_cfg, sort_keys=False))

    from s3prl_ekd.pretrain.launch import main as run_pretrain

    run_pretrain(["-u", "ekd", "-g", str(g_path), "-c", str(c_path), "-n", method["name"],
                  "-p", str(out_dir), "--seed", str(int(settings["seed"])), "--device", "cpu"])
    ckpt = last_checkpoint(out_dir, steps)
    record.write_text(json.dumps({"key": key, "ckpt": str(ckpt)}) + "\n")
    return ckpt


def last_checkpoint(out_dir: Path, steps: int) -> Path:
    """The Runner's checkpoint of the last step (``states-<steps>.ckpt``, or its end-of-epoch name)."""
    exact = Path(out_dir) / checkpoint_name(steps)
    if exact.is_file():
        return exact
    found = sorted(Path(out_dir).glob(f"{PREFIX}*.ckpt"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise DemoPretrainError(f"pretraining in {out_dir} ended without writing a states-*.ckpt: see its log there")
    return found[-1]


def _mtime(path) -> float:
    p = Path(path) if path else None
    return p.stat().st_mtime if p and p.is_file() else 0.0
