"""Check this SUPERB submission folder the way the hidden-set template's ``validate`` does.

    python cli.py validate [--device cpu|cuda]

Exit status 0 when every check passes; otherwise the failed check is printed.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional

import torch

SAMPLE_RATE = 16000
# The template's task keys: a key missing from the output falls back to "hidden_states".
TASKS = ["PR", "SID", "ER", "ASR", "ASV", "SD", "QbE", "ST", "SS", "SE", "secret"]
WAV_SECONDS = [2.0, 1.8, 3.7]  # the template's random test waves
FRAME_TOLERANCE = 5  # |round(max_len / rate) - T| must stay below this


class ValidationError(Exception):
    """A check of the submission folder failed."""


def check_outputs(upstream, wavs: List[torch.Tensor]) -> List[str]:
    """Run the template's checks of the outputs and downsample rates; returns report lines."""
    with torch.no_grad():
        out = upstream(wavs)
    if not isinstance(out, dict) or "hidden_states" not in out:
        raise ValidationError("forward(wavs) must return a dict with a 'hidden_states' key")
    max_len = max(len(w) for w in wavs)
    lines = []
    for task in TASKS:
        states = out.get(task, out["hidden_states"])
        if not isinstance(states, list) or not states:
            raise ValidationError(f"{task}: the features must be a non-empty list of tensors")
        for i, s in enumerate(states):
            if not isinstance(s, torch.Tensor) or s.dim() != 3:
                raise ValidationError(f"{task}: feature {i} must be a 3-D tensor (batch, time, dim)")
            if s.shape != states[0].shape:
                raise ValidationError(f"{task}: feature {i} has shape {tuple(s.shape)}, feature 0 {tuple(states[0].shape)}")
        rate = upstream.get_downsample_rates(task)
        if not isinstance(rate, int):
            raise ValidationError(f"{task}: get_downsample_rates must return an int, got {type(rate).__name__}")
        t = states[0].shape[1]
        if abs(round(max_len / rate) - t) >= FRAME_TOLERANCE:
            raise ValidationError(
                f"{task}: downsample rate {rate} predicts {round(max_len / rate)} frames for "
                f"{max_len} samples, the features have {t}"
            )
        lines.append(f"{task}: {len(states)} x {tuple(states[0].shape)}, downsample rate {rate}")
    return lines


def validate(folder: str = ".", device: str = "cpu") -> List[str]:
    """All checks: files present, the model loads, outputs and rates as the template wants."""
    for name in ("expert.py", "model.pt"):
        if not os.path.isfile(os.path.join(folder, name)):
            raise ValidationError(f"{name} is missing from {os.path.abspath(folder)}")
    sys.path.insert(0, os.path.abspath(folder))
    from expert import UpstreamExpert

    cwd = os.getcwd()
    os.chdir(folder)
    try:
        upstream = UpstreamExpert(ckpt="./model.pt").to(device).eval()
    finally:
        os.chdir(cwd)
    wavs = [torch.randn(int(SAMPLE_RATE * sec), device=device) for sec in WAV_SECONDS]
    return check_outputs(upstream, wavs)


def main(argv: Optional[List[str]] = None) -> int:
    """``python cli.py validate``."""
    parser = argparse.ArgumentParser(prog="cli.py", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("validate", help="check the folder before uploading it")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    folder = os.path.dirname(os.path.abspath(__file__))
    try:
        for line in validate(folder, args.device):
            print(line)
    except ValidationError as e:
        print(f"validate FAILED: {e}", file=sys.stderr)
        return 1
    print("validate passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
