"""``s3prl-ekd bench``: time full pretraining steps of the s3prl-style path and ours, side by side.

Every path trains the same student on the same batches: teachers forward, student forward and
backward, gradient clipping, AdamW step. Paths are built one at a time and freed afterwards so
their memory peaks do not mix.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import sys
import time
from typing import Callable, Dict, List, Optional

import torch

from ..student import EKDStudent, make_student_config
from ..targets import TargetPlan
from . import batches as B
from .models import ARCHS, TeacherSize, random_teacher, s3prl_upstream
from .s3prl_style import S3prlStyleStep
from .timing import PathResult, time_steps

DTYPES = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Flags: sizes (small on CPU, full on a GPU), steps, which paths and ablations to run."""
    g = p.add_argument_group("teachers (default: HuBERT / WavLM Base sizes, random weights)")
    g.add_argument("--teachers", default="hubert,wavlm,hubert",
                   help="architectures, comma-separated (HuBERT, WavLM, RobustHuBERT = hubert); default %(default)s")
    g.add_argument("--teacher-layers", type=int, default=12)
    g.add_argument("--teacher-dim", type=int, default=768)
    g.add_argument("--teacher-ffn", type=int, default=3072)
    g.add_argument("--teacher-heads", type=int, default=12)
    g.add_argument("--teacher-conv-dim", type=int, default=512)
    g.add_argument("--target-layers", default="4,8,12", help="teacher layers the student predicts (DistilHuBERT: 4,8,12)")
    g.add_argument("--scheme", default="average", choices=["average", "concat", "multihead"])
    g = p.add_argument_group("student (default: the paper's DistilHuBERT student)")
    g.add_argument("--student-dim", type=int, default=768)
    g.add_argument("--student-ffn", type=int, default=3072)
    g.add_argument("--student-heads", type=int, default=12)
    g.add_argument("--student-conv-dim", type=int, default=512)
    g.add_argument("--student-precision", choices=list(DTYPES), default=None,
                   help="student autocast; default fp16 on CUDA (s3prl's Runner, fp16: true), fp32 on CPU")
    g = p.add_argument_group("batches and timing")
    g.add_argument("--batch-size", type=int, default=24, help="utterances per batch (DistilHuBERT: 24)")
    g.add_argument("--length-scale", type=float, default=1.0,
                   help="scale LibriSpeech-like lengths (mean 12.3 s) and the 15.6 s crop, e.g. 0.25 on CPU")
    g.add_argument("--steps", type=int, default=10, help="timed steps per path")
    g.add_argument("--warmup", type=int, default=3, help="untimed steps per path before timing")
    g.add_argument("--paths", default="s3prl-style-1,s3prl-style,ours",
                   help="paths to run, comma-separated: s3prl-style-1, s3prl-style, ours")
    g.add_argument("--ablations", default="",
                   help="speed-ups to switch off one at a time in extra `ours` runs, comma-separated, or 'all'")
    g.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    g.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--json", dest="json_path", default="bench_throughput.json", help="where to write the results")


def _ints(text: str) -> List[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def _names(args) -> Dict[str, str]:
    """Teacher name -> architecture; repeated architectures get a numbered name."""
    out: Dict[str, str] = {}
    for i, arch in enumerate(a.strip() for a in args.teachers.split(",")):
        if arch not in ARCHS:
            raise SystemExit(f"--teachers: unknown architecture {arch!r}; choose from {', '.join(ARCHS)}")
        out[f"{arch}{i}"] = arch
    return out


def _teacher_size(args) -> TeacherSize:
    groups = 16 if args.teacher_dim % 16 == 0 else 1
    return TeacherSize(
        layers=args.teacher_layers, dim=args.teacher_dim, ffn=args.teacher_ffn, heads=args.teacher_heads,
        conv_dim=args.teacher_conv_dim, conv_pos=128 if args.teacher_dim >= 256 else 16, conv_pos_groups=groups,
    )


def _student_config(args, exact_padding: bool) -> dict:
    c = args.student_conv_dim
    groups = 16 if args.student_dim % 16 == 0 else 1
    return make_student_config({
        "extractor_conv_feature_layers": f"[({c},10,5)] + [({c},3,2)] * 4 + [({c},2,2)] * 2",
        "encoder_embed_dim": args.student_dim,
        "encoder_ffn_embed_dim": args.student_ffn,
        "encoder_attention_heads": args.student_heads,
        "conv_pos": 128 if args.student_dim >= 256 else 16,
        "conv_pos_groups": groups,
        "exact_padding": exact_padding,
    })


def _plan(args, names: Dict[str, str]) -> TargetPlan:
    dims = {n: args.teacher_dim for n in names}
    scheme = "single" if len(names) == 1 else args.scheme
    return TargetPlan.from_scheme(scheme, dims, layers=_ints(args.target_layers))


def _student_dtype(args, device: torch.device) -> Optional[torch.dtype]:
    if args.student_precision is None:
        return torch.float16 if device.type == "cuda" else None
    return DTYPES[args.student_precision]


def _s3prl_style_step(args, names: Dict[str, str], device: torch.device) -> Callable:
    size = _teacher_size(args)
    teachers = {n: s3prl_upstream(random_teacher(a, size, seed=args.seed + i)).to(device)
                for i, (n, a) in enumerate(names.items())}
    plan = _plan(args, names)
    student = EKDStudent(_student_config(args, exact_padding=False), plan)
    return S3prlStyleStep(teachers, student, plan, device, _student_dtype(args, device))


def _run_path(name: str, n_teachers: int, build: Callable[[], Callable], batch_lengths, args, device) -> PathResult:
    torch.manual_seed(args.seed)
    t0 = time.perf_counter()
    step = build()
    built = time.perf_counter() - t0
    waves = (B.synth_waves(lens, args.seed + i) for i, lens in enumerate(batch_lengths))
    res = time_steps(name, n_teachers, step, waves, batch_lengths, args.warmup, device)
    res.settings["build_seconds"] = built
    del step
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return res


def _batches(args, bucketing: bool) -> List[List[int]]:
    n_batches = args.warmup + args.steps
    pool = B.librispeech_lengths(args.batch_size * max(n_batches, 20), args.seed, args.length_scale)
    pool = B.crop(pool, int(B.CROP_SAMPLES * args.length_scale))
    return B.make_batches(pool, args.batch_size, bucketing, args.seed)[:n_batches]


def run_benchmark(args) -> dict:
    """Run every requested path and return the JSON-ready report."""
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    names = _names(args)
    first = dict(list(names.items())[:1])
    paths = [p.strip() for p in args.paths.split(",") if p.strip()]
    bucketed = _batches(args, bucketing=True)  # s3prl's dataset buckets by length too
    results: Dict[str, PathResult] = {}
    builders = {
        "s3prl-style-1": (len(first), lambda: _s3prl_style_step(args, first, device)),
        "s3prl-style": (len(names), lambda: _s3prl_style_step(args, names, device)),
    }
    for p in paths:
        if p not in builders:
            raise SystemExit(f"--paths: unknown path {p!r}; choose from {', '.join(builders)}")
        n, build = builders[p]
        print(f"[bench] {p}: {n} teacher(s) ...", file=sys.stderr, flush=True)
        results[p] = _run_path(p, n, build, bucketed, args, device)
        print(f"[bench] {p}: {results[p].audio_per_second:.2f} s audio / s", file=sys.stderr, flush=True)
    return _report(args, device, results)


def _report(args, device: torch.device, results: Dict[str, PathResult]) -> dict:
    speed = {k: r.audio_per_second for k, r in results.items()}
    ratios = {}
    if "ours" in speed and "s3prl-style" in speed:
        ratios["ours / s3prl-style"] = speed["ours"] / speed["s3prl-style"]
    if "ours" in speed and "s3prl-style-1" in speed:
        ratios["ours / s3prl-style-1"] = speed["ours"] / speed["s3prl-style-1"]
    if "s3prl-style" in speed and "s3prl-style-1" in speed:
        ratios["s3prl-style / s3prl-style-1"] = speed["s3prl-style"] / speed["s3prl-style-1"]
    for k in speed:
        if k.startswith("ours-no-"):
            ratios[f"ours / {k}"] = speed["ours"] / speed[k]
    return {
        "benchmark": "s3prl-ekd pretrain throughput",
        "unit": "seconds of audio per second (median over timed steps)",
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "args": {k: v for k, v in vars(args).items() if not k.startswith("_") and k != "func"},
        "paths": {k: r.to_dict() for k, r in results.items()},
        "ratios": ratios,
    }


def format_table(report: dict) -> str:
    """The results as a Markdown table plus the ratios."""
    lines = ["| path | teachers | audio s / s | step s (median) | padding | peak memory MB |",
             "|---|---|---|---|---|---|"]
    for name, r in report["paths"].items():
        lines.append(f"| {name} | {r['n_teachers']} | {r['audio_seconds_per_second']:.2f} | "
                     f"{r['median_step_seconds']:.2f} | {r['padding_fraction']:.1%} | "
                     f"{r['peak_memory_mb']:.0f} ({r['memory_kind']}) |")
    lines.append("")
    for k, v in report["ratios"].items():
        lines.append(f"- {k}: {v:.2f}x")
    return "\n".join(lines)


def run(args) -> int:
    """Run the benchmark, print the table and write the JSON report."""
    report = run_benchmark(args)
    with open(args.json_path, "w") as f:
        json.dump(report, f, indent=2)
    print(format_table(report))
    print(f"[bench] wrote {args.json_path}", file=sys.stderr)
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``bench/pretrain_throughput.py``."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(p)
    return run(p.parse_args(argv))
