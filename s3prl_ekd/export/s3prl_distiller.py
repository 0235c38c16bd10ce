"""``s3prl-ekd export-s3prl CKPT OUT``: the student in s3prl's own ``distiller_local`` format.

Vanilla s3prl 0.4.18 loads the file with ``-u distiller_local -k OUT`` (no s3prl-ekd needed). Its
distiller has one ``expand-last`` output block and appends the heads' outputs to
``hidden_states``, so only plans whose heads form one group and output the encoder's width can
be written (``single`` and ``average`` with teachers of the student's width); its expert
hard-codes 320 samples per frame. The conversion itself is
:func:`s3prl_ekd.io.checkpoint.to_s3prl_distiller`.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from s3prl_ekd.distill.student import EKDStudent
from s3prl_ekd.distill.student_checkpoint import load_student, to_s3prl_distiller
from s3prl_ekd.io.atomic import atomic_save
from s3prl_ekd.io.checkpoint import CheckpointError

S3PRL_DISTILLER_RATE = 320  # s3prl's distiller expert returns 320 whatever the conv stack


class DistillerExportError(ValueError):
    """A student that s3prl's distiller format cannot hold with the same features."""


def check_distiller_fit(student: EKDStudent) -> None:
    """Raise :class:`DistillerExportError` naming what s3prl's distiller cannot express."""
    plan = student.plan
    groups = plan.groups()
    if len(groups) != 1:
        raise DistillerExportError(
            f"s3prl's distiller has one output block; this plan ({plan.scheme}) has {len(groups)} head "
            f"groups {list(groups)}: use export-hf or export-submission (heads dropped) instead"
        )
    dim = student.config["encoder_embed_dim"]
    dims = sorted({t.dim for t in plan.targets})
    if dims != [dim]:
        raise DistillerExportError(
            f"s3prl's distiller appends its heads' outputs to hidden_states, which s3prl's featurizer "
            f"stacks: this plan ({plan.scheme}) has head dims {dims}, the encoder {dim}, so its "
            "hidden_states could not be stacked; use export-hf or export-submission instead"
        )
    if student.downsample_rate != S3PRL_DISTILLER_RATE:
        raise DistillerExportError(
            f"the student's conv strides give {student.downsample_rate} samples a frame but s3prl's "
            f"distiller expert reports {S3PRL_DISTILLER_RATE}: downstream labels would be misaligned; "
            "use export-hf or export-submission instead"
        )


def export_s3prl(ckpt: os.PathLike | str, out: os.PathLike | str, force: bool = False) -> Path:
    """Write the student as an s3prl distiller checkpoint; returns its path."""
    out = Path(out)
    if out.is_dir():
        raise DistillerExportError(f"{out} is a folder: give the path of the .ckpt file to write")
    if out.exists() and not force:
        raise DistillerExportError(f"{out} exists: choose a new path or pass --force to overwrite it")
    student, _ = load_student(ckpt)
    check_distiller_fit(student)
    return atomic_save(to_s3prl_distiller(student), out)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``s3prl-ekd export-s3prl``."""
    parser.add_argument("ckpt", help="student checkpoint written by s3prl-ekd (pretraining or save_student)")
    parser.add_argument("out", help="the .ckpt file to write (s3prl's distiller format)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing file")


def run(args: argparse.Namespace) -> int:
    """Export, then print how vanilla s3prl loads it."""
    try:
        out = export_s3prl(args.ckpt, args.out, args.force)
    except (DistillerExportError, CheckpointError) as e:
        print(f"export-s3prl FAILED: {e}", file=sys.stderr)
        return 1
    print(f"wrote s3prl distiller checkpoint {out}")
    print(f"load it with vanilla s3prl: -u distiller_local -k {out}   (hidden_states: projection, layers, heads)")
    print("note: s3prl's distiller runs a padded batch as one tensor; the student (ekd_student) runs each length alone")
    return 0
