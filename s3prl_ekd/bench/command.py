"""``s3prl-ekd bench``: time full pretraining steps of the s3prl-style path and ours, side by side.

Every path trains the same student on the same batches: teachers forward, student forward and
backward, gradient clipping, AdamW step. Paths are built one at a time and freed afterwards so
their memory peaks do not mix. ``ours-cached`` is ``ours`` with the teacher-target cache on and
warm: one untimed pass over the corpus fills it first, so its timed steps are an epoch after the
first (random crops are never cached: their rows still run the teachers).
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

import torch

from s3prl_ekd.bench.corpus import write_noise_corpus
from s3prl_ekd.bench.lengths import CROP_SAMPLES, librispeech_lengths, near_crop_lengths
from s3prl_ekd.bench.models import ARCHS, TeacherSize, write_random_teachers
from s3prl_ekd.bench.ours import OursStep
from s3prl_ekd.bench.s3prl_style import S3prlStyleStep
from s3prl_ekd.bench.timing import PathResult, count_host_syncs, time_steps
from s3prl_ekd.distill.student import EKDStudent, make_student_config
from s3prl_ekd.distill.targets import TargetPlan
from s3prl_ekd.teachers.speedups import SWITCHES, SpeedupConfigError, TeacherSpeedups
from s3prl_ekd.teachers.tiny import pos_conv_groups

DTYPES = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}
PATHS = ("s3prl-style-1", "s3prl-style", "ours", "ours-cached")
DATA_SWITCHES = ("bucketing", "loader")  # pretraining data pipeline: length bucketing; workers + pinned memory


# The paper's shapes: three Base teachers (HuBERT, WavLM, RobustHuBERT = a HuBERT), the DistilHuBERT
# student, batches of distinct lengths just under the 15.6 s crop. Only --batch-size changes (24 on
# a GPU; fewer on a CPU, where each utterance still has the real length).
PRESETS = {
    "real-shapes": dict(teachers="hubert,wavlm,hubert", teacher_layers=12, teacher_dim=768, teacher_ffn=3072,
                        teacher_heads=12, teacher_conv_dim=512, target_layers="4,8,12", student_dim=768,
                        student_ffn=3072, student_heads=12, student_conv_dim=512, length_scale=1.0,
                        lengths="near-crop", no_crop=False),
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Flags: sizes (small on CPU, full on a GPU), steps, which paths and ablations to run."""
    p.add_argument("--preset", choices=sorted(PRESETS), default=None,
                   help="real-shapes: the paper's sizes (three Base teachers, the student, utterances of "
                        "14.6-15.6 s, all lengths distinct); overrides the size and length flags, not --batch-size")
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
    g.add_argument("--lengths", choices=["librispeech", "near-crop"], default="librispeech",
                   help="utterance lengths: LibriSpeech-like (mean 12.3 s), or distinct lengths just under the crop")
    g.add_argument("--steps", type=int, default=10, help="timed steps per path")
    g.add_argument("--warmup", type=int, default=3, help="untimed steps per path before timing")
    g.add_argument("--paths", default="s3prl-style-1,s3prl-style,ours",
                   help="paths to run, comma-separated: s3prl-style-1, s3prl-style, ours, ours-cached "
                        "(ours with a warm teacher-target cache)")
    g.add_argument("--no-crop", action="store_true",
                   help="no 15.6 s crop (sequence_length 0) for every path: the target cache's best case, "
                        "a corpus cut to at most the crop length")
    g.add_argument("--ablations", default="",
                   help="switches to turn off one at a time in extra `ours` runs, comma-separated, or 'all': "
                        "teacher_speedups keys, bucketing, loader")
    g.add_argument("--speedups", default="{}",
                   help='teacher_speedups for `ours` as JSON, e.g. \'{"autocast": "bf16"}\' (default: the config defaults)')
    g.add_argument("--num-workers", type=int, default=2, help="data loader workers for `ours` (pinned memory on GPU)")
    g.add_argument("--workdir", default=None, help="where the temporary teachers and corpus go (default: system temp)")
    g.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    g.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    g.add_argument("--sync-debug", action="store_true",
                   help="CUDA only: count the device-to-host syncs of the timed steps "
                        "(torch.cuda.set_sync_debug_mode('warn')), reported per path as host_syncs_per_step")
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
    groups = pos_conv_groups(args.teacher_dim)  # Base: 16 groups of 48 channels
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


def _student_dtype(args, device: torch.device) -> Optional[torch.dtype]:
    if args.student_precision is None:
        return torch.float16 if device.type == "cuda" else None
    return DTYPES[args.student_precision]


def _s3prl_style_step(args, specs: List[dict], device: torch.device) -> Callable:
    """s3prl's distiller step: teachers from s3prl's hub, as ``torch.hub.load(teacher)`` gives them."""
    import s3prl.hub as hub

    teachers = {}
    for spec in specs:
        t = getattr(hub, spec["upstream"])(ckpt=spec["ckpt"]).to(device).eval()
        t.requires_grad_(False)
        teachers[spec["name"]] = t
    plan = TargetPlan.from_scheme("single" if len(specs) == 1 else args.scheme,
                                  {s["name"]: args.teacher_dim for s in specs}, layers=_ints(args.target_layers))
    student = EKDStudent(_student_config(args, exact_padding=False), plan)
    return S3prlStyleStep(teachers, student, plan, device, _student_dtype(args, device))


def _ours_step(args, specs: List[dict], datarc: dict, speedups: TeacherSpeedups, device: torch.device,
               cache: Optional[Path] = None) -> Callable:
    """The pretrain expert (the real training path) with these speed-ups (and the target cache
    in ``cache``, if given), and the runner's update."""
    from s3prl_ekd.pretrain.ekd.pretrain_expert import UpstreamPretrainExpert

    upstream_config = {
        "teachers": specs,
        "targets": {"scheme": args.scheme if len(specs) > 1 else "single", "layers": _ints(args.target_layers)},
        "student": {k: v for k, v in _student_config(args, exact_padding=True).items()},
        "task": {"sequence_length": _crop(args)},
        "teacher_speedups": speedups.to_dict(),
        "target_cache": {"path": str(cache)} if cache is not None else None,
    }
    expert = UpstreamPretrainExpert(datarc, upstream_config, device=str(device))
    expert.teachers.autocast_check = "report"  # the JSON reports a failed autocast check; timing goes on
    return OursStep(expert, device, _student_dtype(args, device))


def _crop(args) -> int:
    return 0 if getattr(args, "no_crop", False) else int(CROP_SAMPLES * args.length_scale)


def _loader(datarc: dict, args, device: torch.device, target_cache=None):
    from s3prl_ekd.pretrain.ekd.dataset import make_train_loader

    return make_train_loader(datarc, _crop(args), seed=args.seed, device=str(device), target_cache=target_cache)


def _run_path(name: str, n_teachers: int, build: Callable[[], Callable], datarc: dict, args, device) -> PathResult:
    torch.manual_seed(args.seed)
    t0 = time.perf_counter()
    step = build()
    built = time.perf_counter() - t0
    cache = getattr(getattr(step, "expert", None), "target_cache", None)
    filled = 0.0
    if cache is not None:  # fill the cache with one untimed pass over the corpus (the first epoch)
        t0 = time.perf_counter()
        for batch in _loader(datarc, args, device):
            step.expert.teacher_targets(batch)
        filled = time.perf_counter() - t0
        cache.counts.clear()
    loader = _loader(datarc, args, device, target_cache=cache)  # as training does: entries read by the loader
    batches = (b for _ in range(1 + (args.warmup + args.steps) // max(len(loader), 1)) for b in loader)
    with count_host_syncs(device, getattr(args, "sync_debug", False)) as syncs:
        res = time_steps(name, n_teachers, step, batches, args.steps, args.warmup, device)
    if syncs is not None:
        res.settings.update(host_syncs_per_step=len(syncs) / (args.steps + args.warmup),
                            host_sync_sites=sorted({f"{w.filename}:{w.lineno}" for w in syncs}))
    res.settings.update(build_seconds=built, num_workers=datarc["num_workers"], pin_memory=datarc["pin_memory"],
                        bucketing=datarc["bucketing"], sequence_length=_crop(args))
    expert = getattr(step, "expert", None)
    if expert is not None:
        res.settings.update(teacher_hidden_mb=_teacher_hidden_mb(expert, next(iter(_loader(datarc, args, device))), device))
        if expert.teachers.autocast_agreement is not None:  # paths whose teachers ran under autocast
            res.settings.update(autocast_check=expert.teachers.autocast_agreement.to_dict())
    if cache is not None:  # over the warm-up and timed steps
        res.settings.update(target_cache_hit_rate=cache.hit_rate(), target_cache_counts=dict(cache.counts),
                            target_cache_fill_seconds=filled,
                            target_cache_bytes=sum(f.stat().st_size for f in cache.folder.glob("*/*.pt")))
    del step, loader, batches
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return res


def _teacher_hidden_mb(expert, batch, device: torch.device) -> Dict[str, float]:
    """MB of teacher hidden states one batch leaves for the targets: every layer in fp32 (what the
    ensemble kept before it knew the plan, and what s3prl's distiller keeps), and the plan's layers."""
    wavs = batch.wavs.to(device)
    clean = [w[:n] for w, n in zip(wavs, batch.lengths.tolist())]
    with torch.no_grad():
        hidden = expert.teachers(clean)
    used = expert.plan.used_layers()
    mb = lambda ts: sum(t.numel() * t.element_size() for t in ts) / 2**20  # noqa: E731
    return {"all_layers": mb([h for hs in hidden.values() for h in hs]),
            "plan_layers": mb([hidden[n][l] for n, ls in used.items() for l in ls])}


def _ablations(args, speedups: TeacherSpeedups) -> List[str]:
    names = [a.strip() for a in args.ablations.split(",") if a.strip()]
    if names == ["all"]:
        names = speedups.switches_on() + list(DATA_SWITCHES)
    for n in names:
        if n not in SWITCHES and n not in DATA_SWITCHES:
            raise SystemExit(f"--ablations: unknown speed-up {n!r}; choose from "
                             f"{', '.join(SWITCHES + tuple(DATA_SWITCHES))} or all")
    return names


def run_benchmark(args) -> dict:
    """Run every requested path and return the JSON-ready report."""
    if getattr(args, "preset", None):
        for key, value in PRESETS[args.preset].items():
            setattr(args, key, value)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    names = _names(args)
    paths = [p.strip() for p in args.paths.split(",") if p.strip()]
    for p in paths:
        if p not in PATHS:
            raise SystemExit(f"--paths: unknown path {p!r}; choose from {', '.join(PATHS)}")
    try:
        speedups = TeacherSpeedups.from_config(json.loads(args.speedups), where="--speedups")
    except (ValueError, SpeedupConfigError) as e:
        raise SystemExit(f"--speedups: {e}") from None
    ablations = _ablations(args, speedups)

    with tempfile.TemporaryDirectory(prefix="s3prl-ekd-bench-", dir=args.workdir) as tmp:
        tmp = Path(tmp)
        print(f"[bench] writing random teachers and a noise corpus under {tmp}", file=sys.stderr, flush=True)
        specs = write_random_teachers(tmp / "teachers", names, _teacher_size(args), args.seed)
        n_batches = args.warmup + args.steps
        make_lengths = near_crop_lengths if getattr(args, "lengths", "librispeech") == "near-crop" else librispeech_lengths
        lengths = make_lengths(args.batch_size * n_batches, args.seed, args.length_scale)
        data = write_noise_corpus(tmp / "corpus", lengths, args.seed)
        datarc = dict(data, train_batch_size=args.batch_size, num_workers=args.num_workers, pin_memory=True,
                      bucketing=True)
        # s3prl's own recipe buckets by length and loads with workers + pinned memory: so does s3prl-style here
        plain = datarc

        runs = []
        if "s3prl-style-1" in paths:
            runs.append(("s3prl-style-1", 1, lambda: _s3prl_style_step(args, specs[:1], device), plain))
        if "s3prl-style" in paths:
            runs.append(("s3prl-style", len(specs), lambda: _s3prl_style_step(args, specs, device), plain))
        if "ours" in paths:
            runs.append(("ours", len(specs), lambda: _ours_step(args, specs, datarc, speedups, device), datarc))
        if "ours-cached" in paths:
            cache = tmp / "target_cache"
            runs.append(("ours-cached", len(specs),
                         lambda: _ours_step(args, specs, datarc, speedups, device, cache=cache), datarc))
        for a in ablations:
            if a == "bucketing":
                runs.append(("ours-no-bucketing", len(specs), lambda: _ours_step(args, specs, datarc, speedups, device),
                             dict(datarc, bucketing=False)))
            elif a == "loader":
                off = dict(datarc, num_workers=0, pin_memory=False)
                runs.append(("ours-no-loader", len(specs), lambda off=off: _ours_step(args, specs, off, speedups, device), off))
            else:
                sp = speedups.without(a)
                runs.append((f"ours-no-{a}", len(specs), lambda sp=sp: _ours_step(args, specs, datarc, sp, device), datarc))

        results: Dict[str, PathResult] = {}
        for name, n, build, rc in runs:
            print(f"[bench] {name}: {n} teacher(s) ...", file=sys.stderr, flush=True)
            results[name] = _run_path(name, n, build, rc, args, device)
            print(f"[bench] {name}: {results[name].audio_per_second:.2f} s audio / s", file=sys.stderr, flush=True)
    report = _report(args, device, results)
    report["speedups"] = speedups.to_dict()
    return report


def _ratios(speed: Dict[str, float]) -> Dict[str, float]:
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
    if "ours-cached" in speed:
        for ref in ("s3prl-style-1", "s3prl-style", "ours"):
            if ref in speed:
                ratios[f"ours-cached / {ref}"] = speed["ours-cached"] / speed[ref]
    return ratios


def _report(args, device: torch.device, results: Dict[str, PathResult]) -> dict:
    return {
        "benchmark": "s3prl-ekd pretrain throughput",
        "unit": "seconds of audio per second (median over timed steps)",
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "args": {k: v for k, v in vars(args).items() if not k.startswith("_") and k != "func"},
        "paths": {k: r.to_dict() for k, r in results.items()},
        "ratios": _ratios({k: r.audio_per_second for k, r in results.items()}),
        "ratios_cpu_time": _ratios({k: r.audio_per_cpu_second for k, r in results.items()}),
    }


def format_table(report: dict) -> str:
    """The results as a Markdown table plus the ratios."""
    lines = ["| path | teachers | audio s / s | audio s / CPU s | step s (median) | padding | peak memory MB "
             "| teacher hidden states MB (all layers / kept) |",
             "|---|---|---|---|---|---|---|---|"]
    for name, r in report["paths"].items():
        hidden = r["settings"].get("teacher_hidden_mb")
        kept = f"{hidden['all_layers']:.0f} / {hidden['plan_layers']:.0f}" if hidden else "all layers, fp32"
        lines.append(f"| {name} | {r['n_teachers']} | {r['audio_seconds_per_second']:.2f} | "
                     f"{r['audio_seconds_per_cpu_second']:.2f} | {r['median_step_seconds']:.2f} | "
                     f"{r['padding_fraction']:.1%} | {r['peak_memory_mb']:.0f} ({r['memory_kind']}) | {kept} |")
    lines.append("")
    lines.append("| ratio | wall time | CPU time |")
    lines.append("|---|---|---|")
    for k, v in report["ratios"].items():
        lines.append(f"| {k} | {v:.2f}x | {report['ratios_cpu_time'][k]:.2f}x |")
    return "\n".join(lines)


def run(args) -> int:
    """Run the benchmark, print the table and write the JSON report."""
    threads = torch.get_num_threads()
    try:
        report = run_benchmark(args)
    finally:
        torch.set_num_threads(threads)  # the caller (a test session) keeps its own setting
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
