"""Student checkpoints: one documented format, atomic writes, safe (``weights_only``) reads.

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
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import torch

from .checkpoint_scan import CheckpointClaimError, scan_checkpoint
from .io.atomic import TEMP_PREFIX, TEMP_SUFFIX, atomic_save, atomic_write  # noqa: F401 (re-exported)
from .io.safe_globals import SAFE_GLOBALS, allowed_globals  # noqa: F401 (re-exported)
from .student import EKDStudent, conv_layers, make_student_config
from .targets import TargetPlan

FORMAT = "s3prl-ekd/student"
FORMAT_VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint file that is missing, damaged, unsafe or of another model."""


def safe_load(path: os.PathLike | str, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load`` with ``weights_only=True``; every failure becomes a :class:`CheckpointError`."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a folder, not a file: pass the .ckpt file inside it")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist: check the path given with -k / ckpt")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes): it was not written completely; use an earlier one")
    check_claims(path)
    try:
        with allowed_globals(SAFE_GLOBALS):
            return torch.load(path, map_location=map_location, weights_only=True)
    except MemoryError:
        raise
    except Exception as e:  # garbage raises anything from RuntimeError to UnicodeDecodeError
        raise explain_load_error(path, e, always=True) from None


def check_claims(path: os.PathLike | str, extra_globals: Sequence[Any] = ()) -> None:
    """Raise :class:`CheckpointError` when ``path``'s tensors claim more than its bytes hold
    (short records, zero strides, expanding zip records): before ``torch.load`` allocates."""

    try:
        scan_checkpoint(path, extra_globals)
    except CheckpointClaimError as e:
        raise CheckpointError(
            f"checkpoint {path} is not what it claims: {e}; it is damaged or crafted, refused before loading"
        ) from None
    except OSError:
        return  # unreadable: torch.load's error names it


def explain_load_error(path: os.PathLike | str, e: BaseException, always: bool = False) -> Optional[CheckpointError]:
    """The :class:`CheckpointError` for ``e`` raised while ``torch.load`` read ``path``.

    With ``always`` False (errors from someone else's loader, e.g. an s3prl hub expert), None when
    ``e`` does not look like a file that could not be read: that error is then not ours to explain.
    """
    text = str(e)
    if isinstance(e, pickle.UnpicklingError):
        found = re.search(r"GLOBAL ([\w.]+)|unrecognized function <([\w.]+)>", text)
        if found is not None:
            return CheckpointError(
                f"checkpoint {path} holds objects that are not plain data ({found.group(1) or found.group(2)}) and was refused "
                "unread (safe loading, weights_only=True): only load checkpoints you trust, converted to "
                "plain tensors and dicts"
            )
        # the restricted unpickler met bytes that are no pickle at all
        reason = f"not a torch checkpoint: {_unpickler_reason(e)}"
    elif always or isinstance(e, (EOFError, zipfile.BadZipFile)) or raised_in_torch_load(e) or any(
        m in text for m in ("PytorchStreamReader", "central directory", "magic number", "zip archive")
    ):
        reason = f"{type(e).__name__}: {text.splitlines()[0] if text else ''}"
    else:
        return None
    return CheckpointError(
        f"checkpoint {path} cannot be read ({reason}): it is truncated or damaged; "
        "use an earlier checkpoint or write it again"
    )


def raised_in_torch_load(e: BaseException) -> bool:
    """Whether ``e`` was raised inside ``torch.load`` itself (its unpickler met bytes it cannot
    read, e.g. an IndexError on a file that is no checkpoint), not in the caller's code after it."""
    tb, last = e.__traceback__, None
    while tb is not None:
        last = tb.tb_frame.f_code.co_filename
        tb = tb.tb_next
    if last is None:
        return False
    folder, name = os.path.split(last)
    return os.path.basename(folder) == "torch" and name in ("serialization.py", "_weights_only_unpickler.py")


def _unpickler_reason(e: BaseException) -> str:
    found = re.search(r"WeightsUnpickler error: ([^\n]+)", str(e))
    return found.group(1) if found else str(e).splitlines()[0]


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
