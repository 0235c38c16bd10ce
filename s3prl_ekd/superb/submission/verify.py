"""Check a SUPERB submission folder against its student (``s3prl-ekd verify-submission OUT --ckpt CKPT``).

1. The folder holds the template's files, and in a fresh interpreter that cannot import
   s3prl_ekd its own ``cli.py validate`` passes (random waves of 2.0, 1.8, 3.7 s, every task
   key a list of 3-D tensors of one shape, int downsample rates matching the frame count).
2. Its ``hidden_states`` equal the original student's (``s3prl_ekd.upstream.ekd_student.hubconf.ekd_student``) exactly
   (max |diff| == 0) on the same waves, batches of unequal lengths included. Exact because the
   folder runs the same s3prl modules on the same weights in the same order, on the same device
   with the same number of threads; any difference means other weights or other code.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List

import torch

from s3prl_ekd.io import SAMPLE_RATE
from s3prl_ekd.io.checkpoint import CheckpointError, safe_load
from s3prl_ekd.superb.submission.build import REQUIRED_FILES, SubmissionError

PROBE = Path(__file__).with_name("probe.py")

# Batches compared with the student: the template's unequal-length batch, one utterance alone,
# and an equal-length batch (no padding).
WAVE_BATCHES_SECONDS = [[2.0, 1.8, 3.7], [1.0], [1.5, 1.5]]


def make_waves(seed: int = 0) -> List[List[torch.Tensor]]:
    """Deterministic random 16 kHz waves, batched as ``WAVE_BATCHES_SECONDS``."""
    g = torch.Generator().manual_seed(seed)
    return [[torch.randn(int(s * SAMPLE_RATE), generator=g) for s in batch] for batch in WAVE_BATCHES_SECONDS]


def run_folder_fresh(folder: Path, waves: List[List[torch.Tensor]], timeout: int = 600) -> Dict[str, Any]:
    """The folder's validate + features, computed by ``probe.py`` in a new process."""
    with tempfile.TemporaryDirectory(prefix="ekd-verify-") as tmp:
        waves_path, out_path = os.path.join(tmp, "waves.pt"), os.path.join(tmp, "features.pt")
        torch.save(waves, waves_path)
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        cmd = [sys.executable, "-I", str(PROBE), str(folder), waves_path, out_path, str(torch.get_num_threads())]
        proc = subprocess.run(cmd, cwd=folder, env=env, capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
            what = "its cli.py validate failed" if proc.returncode >= 10 else "it does not load"
            raise SubmissionError(f"{folder}: {what} in a fresh process:\n{tail}")
        result = torch.load(out_path, weights_only=True)
        result["validate_output"] = proc.stdout
    return result


def verify_submission(folder: os.PathLike | str, ckpt: os.PathLike | str) -> Dict[str, Any]:
    """Run both checks; raise :class:`SubmissionError` naming the first failure; returns a report."""
    folder = Path(folder).resolve()
    if not folder.is_dir():
        raise SubmissionError(f"{folder} is not a folder: give the folder export-submission wrote")
    missing = [n for n in REQUIRED_FILES if not (folder / n).is_file()]
    if missing:
        raise SubmissionError(f"{folder} lacks {', '.join(missing)}: export it again with s3prl-ekd export-submission")
    try:
        model = safe_load(folder / "model.pt")
    except CheckpointError as e:
        raise SubmissionError(str(e)) from None
    if not isinstance(model, dict) or "heads" not in model:
        raise SubmissionError(f"{folder / 'model.pt'} is not an s3prl-ekd submission model: export it again")
    include_heads = model["heads"] is not None

    waves = make_waves()
    got = run_folder_fresh(folder, waves)
    if got.get("s3prl_ekd_imported"):
        raise SubmissionError(f"{folder}: loading it imported s3prl_ekd; the folder must be self-contained")

    from s3prl_ekd.upstream.ekd_student.hubconf import ekd_student

    reference = ekd_student(ckpt=str(ckpt), include_heads=include_heads).eval()
    max_diff = 0.0
    with torch.no_grad():
        for b, (wavs, theirs) in enumerate(zip(waves, got["hidden_states"])):
            ours = reference(wavs)["hidden_states"]
            lengths = [len(w) for w in wavs]
            if len(ours) != len(theirs):
                raise SubmissionError(
                    f"{folder}: {len(theirs)} hidden states, the student in {ckpt} gives {len(ours)} "
                    f"(include_heads={include_heads}): export it again from this checkpoint"
                )
            for i, (a, t) in enumerate(zip(ours, theirs)):
                if a.shape != t.shape:
                    raise SubmissionError(
                        f"{folder}: hidden state {i} of the batch of lengths {lengths} has shape "
                        f"{tuple(t.shape)}, the student in {ckpt} gives {tuple(a.shape)}"
                    )
                diff = float((a - t).abs().max())
                max_diff = max(max_diff, diff)
                if diff != 0.0:
                    raise SubmissionError(
                        f"{folder}: hidden state {i} of the batch of lengths {lengths} differs from the "
                        f"student in {ckpt} (max |diff| = {diff:.3g}, must be 0): the folder's model.pt or "
                        "expert.py is not this checkpoint's student; export it again"
                    )
    return {
        "folder": str(folder),
        # the folder's validate report, without s3prl's construction messages
        "validate": [l for l in got["validate_output"].splitlines() if l.strip() and not l.lstrip().startswith("[")],
        "batches": [[len(w) for w in wavs] for wavs in waves],
        "hidden_states": len(got["hidden_states"][0]),
        "max_abs_diff": max_diff,
        "downsample_rates": got["rates"],
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``s3prl-ekd verify-submission``."""
    parser.add_argument("folder", help="the folder export-submission wrote")
    parser.add_argument("--ckpt", required=True, help="the student checkpoint it was exported from")


def run(args: argparse.Namespace) -> int:
    """Verify and print the report; exit status 1 on any failure."""
    try:
        report = verify_submission(args.folder, args.ckpt)
    except (SubmissionError, CheckpointError, ValueError, OSError) as e:
        print(f"verify-submission FAILED: {e}", file=sys.stderr)
        return 1
    for line in report["validate"]:
        print(f"  {line}")
    print(
        f"verify-submission passed: {report['folder']} validates in a fresh process without s3prl_ekd, "
        f"and its {report['hidden_states']} hidden states equal the student's in {args.ckpt} "
        f"(max |diff| = {report['max_abs_diff']}) on batches of lengths {report['batches']}"
    )
    return 0
