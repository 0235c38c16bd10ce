"""Start the student from a teacher's weights, as DistilHuBERT does.

DistilHuBERT (s3prl's ``pretrain/distiller``, ``init_teacher_conv_layers`` and
``init_teacher_encoder_layers``) copies the teacher's conv feature extractor (and
``post_extract_proj``), then its positional convolution and first transformer blocks, into the
student. The student's module names are s3prl's distiller names, which are the HuBERT / WavLM
names for these parts, so the mapping is one of equal keys; every shape is checked before
anything is copied, and a teacher that does not fit is refused with what differs, unless the
config allows starting from random weights.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Tuple

import torch
from torch import nn

from s3prl_ekd.config.reader import from_mapping

logger = logging.getLogger(__name__)



class StudentInitError(ValueError):
    """The chosen teacher's weights cannot be copied into the student."""


@dataclass(frozen=True)
class InitFrom:
    """The ``init_from:`` block: which teacher's weights the student starts from (DistilHuBERT's way)."""

    teacher: str  # the name of one of the teachers
    conv: bool = True  # its conv feature extractor (and post_extract_proj)
    layers: bool = True  # its positional convolution and first transformer blocks
    allow_random: bool = False  # a teacher that does not fit: start from random weights instead of an error


def _teacher_model(source, name: Optional[str]) -> Tuple[nn.Module, str, int]:
    """(the teacher's inner model, its name, how many blocks it still has) from an ensemble, a Teacher or an expert."""
    teachers = getattr(source, "teachers", None)
    if isinstance(teachers, nn.ModuleDict):  # a TeacherEnsemble
        if name not in teachers:
            raise StudentInitError(
                f"init_from names teacher {name!r}, which is not among the teachers {list(teachers)} (key `teacher`)"
            )
        source = teachers[name]
    expert = getattr(source, "expert", source)  # a Teacher wraps an s3prl expert
    model = getattr(expert, "model", None)
    label = name or getattr(source, "name", "teacher")
    encoder = getattr(model, "encoder", None)
    if model is None or not hasattr(model, "feature_extractor") or not hasattr(encoder, "layers"):
        raise StudentInitError(
            f"teacher {label!r} is not a HuBERT / WavLM / wav2vec 2.0 style model (no model.feature_extractor "
            "and model.encoder.layers): the student cannot start from it; choose another teacher under "
            "`init_from.teacher`, or set `init_from.allow_random: true`"
        )
    return model, label, len(encoder.layers)


def teacher_to_student_keys(student: nn.Module, conv: bool = True, layers: bool = True) -> Dict[str, str]:
    """The student parameter names to fill and the teacher names they come from (equal names)."""
    prefixes: List[str] = []
    if conv:
        prefixes += ["feature_extractor.", "post_extract_proj."]
    if layers:
        prefixes += ["encoder.pos_conv."] + [f"encoder.layers.{i}." for i in range(len(student.encoder.layers))]
    return {k: k for k in student.state_dict() if k.startswith(tuple(prefixes))}


def _mismatches(student: nn.Module, model: nn.Module, label: str, conv: bool, layers: bool) -> List[str]:
    problems: List[str] = []
    s_sd, t_sd = student.state_dict(), model.state_dict()
    groups = (["feature_extractor.", "post_extract_proj."] if conv else []) + (
        ["encoder.pos_conv."] + [f"encoder.layers.{i}." for i in range(len(student.encoder.layers))] if layers else []
    )
    for prefix in groups:
        s_keys = {k for k in s_sd if k.startswith(prefix)}
        t_keys = {k for k in t_sd if k.startswith(prefix)}
        for k in sorted(s_keys - t_keys):
            problems.append(f"student {k} has no counterpart in teacher {label!r}")
        for k in sorted(t_keys - s_keys):
            problems.append(f"teacher {label!r} has {k}, which the student lacks (another architecture)")
        for k in sorted(s_keys & t_keys):
            if s_sd[k].shape != t_sd[k].shape:
                problems.append(f"{k}: student {tuple(s_sd[k].shape)} vs teacher {tuple(t_sd[k].shape)}")
    if layers and len(student.encoder.layers):
        t_norm_first = bool(getattr(model.encoder, "layer_norm_first", False))
        s_norm_first = bool(student.config.get("layer_norm_first", False))
        if t_norm_first != s_norm_first:
            problems.append(
                f"teacher {label!r} has layer_norm_first={t_norm_first}, the student {s_norm_first}: "
                "the copied blocks would compute something else (set the student's layer_norm_first)"
            )
        t_act = getattr(model.encoder.layers[0].activation_fn, "__name__", None)
        s_act = getattr(student.encoder.layers[0].activation_fn, "__name__", None)
        if t_act != s_act:
            problems.append(f"teacher {label!r} blocks use activation {t_act}, the student's {s_act} (activation_fn)")
    return problems


def init_student_from_teacher(
    student: nn.Module,
    ensemble_or_teacher,
    name: Optional[str] = None,
    conv: bool = True,
    layers: bool = True,
    allow_random: bool = False,
) -> List[str]:
    """Copy a teacher's conv extractor (+ projection) and first blocks into the student; the copied keys.

    ``ensemble_or_teacher`` is a ``TeacherEnsemble`` (then ``name`` picks the teacher), a
    ``Teacher`` or an s3prl HuBERT / WavLM expert. When the shapes do not fit, raises
    :class:`StudentInitError` listing what differs, or, with ``allow_random``, logs it and leaves
    the student's random init (returns ``[]``).
    """
    try:
        model, label, n_layers = _teacher_model(ensemble_or_teacher, name)
        if layers and len(student.encoder.layers) > n_layers:
            raise StudentInitError(
                f"the student has {len(student.encoder.layers)} transformer layers but teacher {label!r} "
                f"computes {n_layers}: it was cut to the plan's deepest layer; initialise the student "
                "before the plan is set, or init the conv layers only (`init_from.layers: false`)"
            )
        problems = _mismatches(student, model, label, conv, layers)
        if problems:
            shown = "; ".join(problems[:6]) + (f"; ... ({len(problems) - 6} more)" if len(problems) > 6 else "")
            raise StudentInitError(
                f"the student cannot start from teacher {label!r}: {shown}. Make the student's conv / encoder "
                "config match the teacher, init fewer parts (`init_from.conv` / `init_from.layers`), or set "
                "`init_from.allow_random: true` to start from random weights"
            )
    except StudentInitError as e:
        if not allow_random:
            raise
        logger.warning("%s -- starting from random weights (allow_random: true)", e)
        return []
    mapping = teacher_to_student_keys(student, conv, layers)
    t_sd = model.state_dict()
    with torch.no_grad():
        s_sd = student.state_dict()
        for s_key, t_key in mapping.items():
            s_sd[s_key].copy_(t_sd[t_key].to(s_sd[s_key].dtype))
    logger.info("student initialised from teacher %r: %d tensors", label, len(mapping))
    return list(mapping)


def init_student_from_config(student: nn.Module, ensemble, init_from: Optional[Mapping]) -> List[str]:
    """Apply an ``init_from: {teacher: NAME, conv: true, layers: true, allow_random: false}`` block."""
    if not init_from:
        return []
    cfg = from_mapping(InitFrom, init_from, "init_from", StudentInitError)
    return init_student_from_teacher(
        student, ensemble, cfg.teacher, conv=cfg.conv, layers=cfg.layers, allow_random=cfg.allow_random
    )
