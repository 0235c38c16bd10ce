"""Export a student checkpoint as a SUPERB hidden-set submission folder (``s3prl-ekd export-submission``).

The folder follows the organisers' template (``superb/superb-submission``)::

    OUT/expert.py         UpstreamExpert(ckpt="./model.pt"), built from s3prl's distiller blocks
    OUT/model.pt          plain data: student config + weights (heads dropped unless asked)
    OUT/cli.py            ``python cli.py validate``: the template's checks
    OUT/hubconf.py        torch.hub / s3prl-style entry ``ekd_student_submission``
    OUT/requirements.txt  torch, s3prl==0.4.18
    OUT/README.md         what the model is: teachers, scheme, steps, parameter count
    OUT/LICENSE

``expert.py``, ``cli.py`` and ``hubconf.py`` are copied from ``files/``; they never
import s3prl_ekd, so the folder loads wherever torch and s3prl are installed.
``s3prl-ekd verify-submission`` (verify.py) proves it gives the student's features.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

from s3prl_ekd import __version__
from s3prl_ekd.distill.student import EKDStudent
from s3prl_ekd.distill.student_checkpoint import load_student
from s3prl_ekd.io.atomic import atomic_save, atomic_write
from s3prl_ekd.io.checkpoint import safe_load
from s3prl_ekd.upstream.ekd_student.expert import check_heads_fit

# Must match FORMAT / FORMAT_VERSION in files/expert.py.
SUBMISSION_FORMAT = "s3prl-ekd/superb-submission"
SUBMISSION_FORMAT_VERSION = 1
TEMPLATE_DIR = Path(__file__).with_name("files")
COPIED_FILES = ("expert.py", "cli.py", "hubconf.py")
REQUIRED_FILES = ("expert.py", "model.pt", "requirements.txt", "README.md", "LICENSE", "cli.py", "hubconf.py")
S3PRL_VERSION = "0.4.18"


class SubmissionError(RuntimeError):
    """A submission folder that cannot be written or does not pass its checks."""


def submission_model(student: EKDStudent, include_heads: bool = False, info: Optional[Mapping] = None) -> Dict[str, Any]:
    """The plain-data ``model.pt`` dict of a student (what ``files/expert.py`` reads)."""
    heads = None
    if include_heads:
        check_heads_fit(student)
        groups = list(student.plan.groups().values())
        dim = student.config["encoder_embed_dim"]
        inter = student.config["out_layer_inter_dim"]
        heads = {
            "groups": [list(g) for g in groups],
            "dims": [student.plan.targets[g[0]].dim for g in groups],
            "inter_dim": int(inter) if int(inter) > 0 else int(dim),
        }
    weights = {
        k: v.detach().cpu().clone()
        for k, v in student.state_dict().items()
        if include_heads or not k.startswith("heads.")
    }
    return {
        "format": SUBMISSION_FORMAT,
        "format_version": SUBMISSION_FORMAT_VERSION,
        "conv_layers": [list(layer) for layer in student.conv_layers],
        # s3prl DistillerConfig keys; exact_padding is ours and travels on its own
        "config": {k: v for k, v in student.config.items() if k != "exact_padding"},
        "exact_padding": bool(student.config["exact_padding"]),
        "heads": heads,
        "state_dict": weights,
        "info": dict(info or {}),
    }


def teacher_names(state: Mapping, student: EKDStudent) -> List[str]:
    """Readable teachers from ``Config.teachers`` (``TeacherEnsemble.describe()`` dicts or names), else the plan's."""
    names = []
    for t in state.get("Config", {}).get("teachers") or []:
        if isinstance(t, Mapping):
            name = str(t.get("name") or t.get("upstream") or "?")
            ckpt = os.path.basename(str(t["ckpt"])) if t.get("ckpt") else None
            details = [str(x) for x in (t.get("upstream"), ckpt) if x and str(x) != name]
            names.append(f"{name} ({', '.join(details)})" if details else name)
        else:
            names.append(str(t))
    return names or student.plan.teachers()


def describe(student: EKDStudent, state: Mapping, ckpt: os.PathLike | str, include_heads: bool) -> Dict[str, Any]:
    """What the model is, from the checkpoint: teachers, scheme, targets, steps, sizes."""
    plan = student.plan
    return {
        "source_checkpoint": os.path.basename(str(ckpt)),
        "step": state.get("Step"),
        "teachers": teacher_names(state, student),
        "scheme": plan.scheme,
        "targets": [
            {"name": t.name, "dim": t.dim, "op": t.op, "sources": [f"{k} layer {l}" for k, l in t.sources]}
            for t in plan.targets
        ],
        "num_parameters": student.num_parameters(with_heads=False),
        "num_parameters_with_heads": student.num_parameters(with_heads=True),
        "include_heads": bool(include_heads),
        "hidden_states": student.config["encoder_layers"] + 1 + (len(next(iter(plan.groups().values()))) if include_heads else 0),
        "hidden_size": student.config["encoder_embed_dim"],
        "downsample_rate": student.downsample_rate,
        "s3prl_ekd_version": __version__,
    }


def readme_text(info: Mapping) -> str:
    """README.md of the folder: the model, its size, how to load and check it."""
    n = info["num_parameters"]
    step = info["step"]
    teachers = ", ".join(info["teachers"]) or "(not recorded in the checkpoint)"
    targets = "\n".join(
        f"| {t['name']} | {t['op']} | {', '.join(t['sources'])} | {t['dim']} |" for t in info["targets"]
    )
    hidden = (
        "the projected CNN features, the transformer layers and the prediction heads'\n  outputs "
        "(several teachers' heads averaged position by position)"
        if info["include_heads"]
        else "the projected CNN features and the transformer layers (prediction heads\n  dropped, as DistilHuBERT)"
    )
    heads_note = (
        f" With the kept prediction heads the model has {info['num_parameters_with_heads']:,} parameters."
        if info["include_heads"]
        else ""
    )
    return f"""# Ensemble-distilled DistilHuBERT-style student (SUPERB hidden-set submission)

A 2-layer DistilHuBERT-style student distilled from an ensemble of self-supervised speech models
with s3prl-ekd (ensemble knowledge distillation, Huang et al., ICASSP 2023, arXiv 2302.12757).

- **Parameters:** {n:,} ({n / 1e6:.2f} M), without prediction heads, counted as DistilHuBERT
  reports its 23.49 M.{heads_note}
- **Teachers:** {teachers}
- **Scheme:** {info['scheme']} ({len(info['targets'])} prediction targets, below)
- **Pretraining steps:** {step if step is not None else '(not recorded in the checkpoint)'}
- **Source checkpoint:** `{info['source_checkpoint']}`
- **Features:** `hidden_states` = {info['hidden_states']} tensors of B x T x {info['hidden_size']}:
  {hidden}.
  One frame per {info['downsample_rate']} samples (20 ms at 16 kHz). No task-specific keys: every
  task uses `hidden_states` (weighted sum in SUPERB's harness).

| target | how it is made | teacher layers | dim |
|---|---|---|---|
{targets}

## Use

```python
from expert import UpstreamExpert        # needs torch and s3prl=={S3PRL_VERSION} (requirements.txt)
upstream = UpstreamExpert(ckpt="./model.pt")
out = upstream([wav])                     # list of 16 kHz 1-D float tensors
out["hidden_states"]                      # list of B x T x D tensors
```

`model.pt` is plain data (`torch.load(..., weights_only=True)`); the model is defined in
`expert.py` from s3prl's distiller building blocks. `hubconf.py` offers the same as
`torch.hub.load(".", "ekd_student_submission", source="local")`.

## Check before uploading

```bash
pip install -r requirements.txt
python cli.py validate
```

Written by s3prl-ekd {info['s3prl_ekd_version']} (`s3prl-ekd export-submission`); `s3prl-ekd
verify-submission` checks that this folder gives exactly the original student's features.
"""


LICENSE_NOTICE = """Copyright the authors of this submission.

Licensed under the Apache License, Version 2.0 (the "License"); you may not use these files
except in compliance with the License. You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software distributed under the
License is distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND,
either express or implied. See the License for the specific language governing permissions
and limitations under the License.

The model's weights are distilled from the teacher models named in README.md; their own
licences apply to them as well.
"""


def requirements_text() -> str:
    """requirements.txt: what expert.py imports."""
    import torch

    return (
        f"# expert.py imports torch and s3prl's distiller modules; verified with torch {torch.__version__.split('+')[0]}\n"
        "torch>=1.13  # torch.load(weights_only=True)\n"
        f"s3prl=={S3PRL_VERSION}\n"
    )


def export_submission(
    ckpt: os.PathLike | str,
    out_dir: os.PathLike | str,
    include_heads: bool = False,
    license_file: Optional[os.PathLike | str] = None,
    force: bool = False,
) -> Path:
    """Write the submission folder for a student checkpoint; returns the folder."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise SubmissionError(f"{out} exists and is not a folder: give a folder path for the submission")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise SubmissionError(f"{out} is not empty: choose a new folder or pass --force to overwrite its files")
    student, state = load_student(ckpt)  # CheckpointError names the file when it is not a student
    try:
        info = describe(student, state, ckpt, include_heads)
        model = submission_model(student, include_heads, info)
    except ValueError as e:
        raise SubmissionError(f"{ckpt}: {e}") from None
    out.mkdir(parents=True, exist_ok=True)
    # every file is written to a temp file and renamed into place: a symlink already there is
    # replaced, never written through (--force must not overwrite files outside the folder)
    atomic_save(model, out / "model.pt")
    texts = {name: (TEMPLATE_DIR / name).read_bytes() for name in COPIED_FILES}
    texts["requirements.txt"] = requirements_text().encode()
    texts["README.md"] = readme_text(info).encode()
    texts["LICENSE"] = Path(license_file).read_bytes() if license_file else LICENSE_NOTICE.encode()
    for name, data in texts.items():
        atomic_write(out / name, lambda f, data=data: f.write(data))
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``s3prl-ekd export-submission``."""
    parser.add_argument("ckpt", help="student checkpoint written by s3prl-ekd (pretraining or save_student)")
    parser.add_argument("out", help="folder to write (must be new or empty unless --force)")
    parser.add_argument(
        "--include-heads", action="store_true",
        help="keep the prediction heads and append their outputs to hidden_states (default: dropped, as DistilHuBERT)",
    )
    parser.add_argument("--license", dest="license_file", help="LICENSE file to ship (default: an Apache-2.0 notice)")
    parser.add_argument("--force", action="store_true", help="overwrite the files of a non-empty folder")


def run(args: argparse.Namespace) -> int:
    """Export, then print what was written."""
    from s3prl_ekd.io.checkpoint import CheckpointError

    try:
        out = export_submission(args.ckpt, args.out, args.include_heads, args.license_file, args.force)
    except (SubmissionError, CheckpointError) as e:
        print(f"export-submission FAILED: {e}", file=sys.stderr)
        return 1
    info = safe_load(out / "model.pt")["info"]
    print(f"wrote SUPERB submission folder {out}: {', '.join(sorted(p.name for p in out.iterdir()))}")
    print(f"model: {info['num_parameters']:,} parameters without heads, {info['scheme']} of {', '.join(info['teachers'])}, step {info['step']}")
    print(f"check it: s3prl-ekd verify-submission {out} --ckpt {args.ckpt}   (or: cd {out} && python cli.py validate)")
    return 0
