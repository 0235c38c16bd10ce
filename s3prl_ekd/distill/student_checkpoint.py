"""Student checkpoints: one documented format, written atomically, read safely (:mod:`s3prl_ekd.io.checkpoint`).

Format (a ``torch.save`` dict, loadable with ``torch.load(..., weights_only=True)``)::

    {
      "format": "s3prl-ekd/student",   # marks the file as ours
      "format_version": 1,
      "Config": {"student": {...},     # s3prl distiller-style keys, see student.py
                 "plan": {...},        # TargetPlan.to_dict()
                 "teachers": [...]},   # optional: how the targets were made (informative)
      "Student": state_dict,           # EKDStudent weights (heads under "heads.")
      "Step": int,                     # optional, pretraining step
    }

Pretraining checkpoints add ``Optimizer``/``Scheduler``/``Args`` etc. next to these keys; the
student loads from either.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple

import torch

from s3prl_ekd.distill.student import EKDStudent, conv_layers, make_student_config
from s3prl_ekd.distill.targets import TargetPlan
from s3prl_ekd.io.atomic import atomic_save
from s3prl_ekd.io.checkpoint import CheckpointError, safe_load

FORMAT = "s3prl-ekd/student"
FORMAT_VERSION = 1


def student_state(
    student: EKDStudent, step: Optional[int] = None, teachers: Optional[list] = None
) -> Dict[str, Any]:
    """The checkpoint dict of a student (see the module docstring)."""
    state: Dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "Config": {
            "student": dict(student.config),
            "plan": student.plan.to_dict(),
            "teachers": list(teachers or []),
        },
        "Student": {k: v.detach().cpu() for k, v in student.state_dict().items()},
    }
    if step is not None:
        state["Step"] = int(step)
    return state


def save_student(
    student: EKDStudent,
    path: os.PathLike | str,
    step: Optional[int] = None,
    teachers: Optional[list] = None,
) -> Path:
    """Write a student checkpoint atomically."""
    return atomic_save(student_state(student, step, teachers), path)


def check_student_state(state: Any, path: os.PathLike | str) -> None:
    """Raise :class:`CheckpointError` unless ``state`` is one of our student checkpoints."""
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{path} is not a student checkpoint (it holds a {type(state).__name__}, not a dict)")
    if state.get("format") != FORMAT:
        hint = ""
        if "Distiller" in state:
            hint = " It looks like an s3prl distiller checkpoint: load it with -u distiller_local."
        elif "model_weight" in state or "model" in state:
            hint = " It looks like a teacher checkpoint (HuBERT/WavLM/fairseq): use -u hubert_local / wavlm_local."
        raise CheckpointError(
            f"{path} is not an s3prl-ekd student checkpoint (no 'format': '{FORMAT}' entry).{hint}"
        )
    version = state.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has student checkpoint format version {version!r}; this s3prl-ekd reads up to "
            f"{FORMAT_VERSION}: upgrade s3prl-ekd"
        )
    cfg = state.get("Config")
    if not isinstance(cfg, Mapping) or "student" not in cfg or "plan" not in cfg or "Student" not in state:
        raise CheckpointError(f"{path} is a damaged student checkpoint: 'Config.student', 'Config.plan' or 'Student' is missing")


def to_s3prl_distiller(student: EKDStudent) -> Dict[str, Any]:
    """The student in s3prl's distiller checkpoint format (``-u distiller_local -k``).

    Possible when the plan has one head group (single, average, concat): s3prl's distiller has
    one ``expand-last`` output block.
    """
    groups = student.plan.groups()
    if len(groups) != 1:
        raise CheckpointError(
            f"s3prl's distiller format holds one head group; this plan ({student.plan.scheme}) has "
            f"{len(groups)}: export with heads dropped is not possible in that format"
        )
    cfg = {k: v for k, v in student.config.items() if k != "exact_padding"}
    n = len(student.plan)
    cfg.update(
        n_tasks=n,
        task_emb_type="expand-last",
        out_layer_type="expand-last",
        final_dim=student.plan.targets[0].dim,
        pred_layer_id=[max(l for _, l in t.sources) for t in student.plan.targets],
        loss_type="l1",
        cosine_loss=1.0,
    )
    weights = {}
    for k, v in student.state_dict().items():
        k = k.replace("heads.blocks.0.", "output_layer.", 1) if k.startswith("heads.") else k
        weights[k] = v.detach().cpu()
    return {"Config": {"distiller": cfg}, "Distiller": weights}


def load_student(
    path: os.PathLike | str, map_location: str | torch.device = "cpu"
) -> Tuple[EKDStudent, Dict[str, Any]]:
    """Build the student from a checkpoint file; returns (student, the whole checkpoint dict)."""
    state = safe_load(path, map_location)
    check_student_state(state, path)
    student = student_from_state(state, path)
    return student, state


def student_from_state(state: Mapping, path: os.PathLike | str = "<memory>") -> EKDStudent:
    """Build the student from an already loaded checkpoint dict."""
    cfg = state["Config"]
    weights = state["Student"]
    if not isinstance(weights, Mapping) or not all(isinstance(v, torch.Tensor) for v in weights.values()):
        raise CheckpointError(f"{path}: 'Student' is not a state dict of tensors: the checkpoint is damaged")
    try:
        config = make_student_config(cfg["student"])
        plan = TargetPlan.from_dict(cfg["plan"])
        # a file from the internet must not make us build a model far bigger than its weights
        implied, stored = implied_parameters(config, plan), sum(v.numel() for v in weights.values())
        if implied > 2 * stored + 1_000_000:
            raise CheckpointError(
                f"{path}: its config describes a student of {implied:,} parameters but the file holds "
                f"{stored:,} weights: the checkpoint is damaged or not what it claims; refused before building"
            )
        student = EKDStudent(config, plan)
    except CheckpointError:
        raise
    except (ValueError, KeyError, TypeError) as e:  # StudentConfigError, PlanError are ValueErrors
        raise CheckpointError(
            f"{path}: its student config or target plan is invalid ({type(e).__name__}: {e}): "
            "the checkpoint is damaged or written by an incompatible s3prl-ekd"
        ) from None
    try:
        student.load_state_dict(weights)
    except RuntimeError as e:
        raise CheckpointError(
            f"{path}: the weights do not fit the student its config describes: {str(e).splitlines()[0]}"
        ) from None
    return student


def implied_parameters(config: Mapping, plan: TargetPlan) -> int:
    """Roughly how many parameters a student config and plan build (without building it)."""
    n, c_in = 0, 1
    for c_out, kernel, _ in conv_layers(config):
        n += c_out * c_in * kernel
        c_in = c_out
    d, f = int(config["encoder_embed_dim"]), int(config["encoder_ffn_embed_dim"])
    n += c_in * d if c_in != d else 0
    n += d * (d // max(1, int(config["conv_pos_groups"]))) * int(config["conv_pos"])
    n += int(config["encoder_layers"]) * (4 * d * d + 2 * d * f)
    inter = int(config["out_layer_inter_dim"]) if int(config["out_layer_inter_dim"]) > 0 else d
    n += sum(d * inter + inter * t.dim for t in plan.targets)
    return n
