"""The demo's report: ``results.json``, a Markdown table ``results.md`` and a PNG chart.

Results are plain data: one row per upstream (a method), one number per task. The table and the
chart are made from ``results.json`` alone, so they can be redrawn without re-running anything.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np

from s3prl_ekd.probe.report import probe_markdown, protocol_lines

# How each column is scored (the metric s3prl's task reports), and which way is better. A column
# is a task, or "<task>-<EXTRA>" for an extra metric the task also prints (superb.Task.extra_metrics).
TASK_METRICS: Dict[str, Dict[str, object]] = {
    "PR": {"metric": "PER %", "higher_is_better": False},
    "SID": {"metric": "accuracy %", "higher_is_better": True},
    "ER": {"metric": "accuracy %", "higher_is_better": True},
    "ASR": {"metric": "WER %", "higher_is_better": False},
    # asr's character error rate: at the demo's size every WER is ~100%, the CER still moves
    "ASR-CER": {"metric": "CER %", "higher_is_better": False, "label": "ASR"},
}


def columns(tasks: Sequence[str]) -> List[str]:
    """The table's columns for ``tasks``: each task, then its extra metrics' columns."""
    return [c for t in tasks for c in [t] + [k for k in TASK_METRICS if k.startswith(f"{t}-")]]


def column_label(column: str) -> str:
    """``PR PER %``, ``ASR CER %``, ...: the task and its metric."""
    spec = TASK_METRICS[column]
    return f"{spec.get('label', column)} {spec['metric']}"

def harness_label(results: Mapping) -> str:
    """What the harness table is, on this corpus (beside the probes, which lead the report)."""
    steps = sorted((results.get("settings", {}).get("downstream", {}).get("steps") or {}).values())
    size = f"{steps[0]}-{steps[-1]} SGD steps per task here" if steps else "a few hundred SGD steps per task"
    return (
        "The protocol users run at full scale: each row trains s3prl's own downstream model on each "
        f"task ({size}) and scores its test split. At this size one run is noisy (two seeds of the "
        "same method differed by up to 15 points in the README's measurements) and ASR's WER stays "
        "near 100 % for every row, so read this table as the harness running end to end, not as a "
        "ranking; the probes above are the comparison to read."
    )


# Bar colours by kind of row: floors grey, single teachers blue, ensembles orange, teachers green.
KIND_COLOURS = {"floor": "#9e9e9e", "single": "#4c72b0", "ensemble": "#dd8452", "teacher": "#55a868"}


def write_json(results: Mapping, path: Path) -> Path:
    """Write ``results`` (rows, tasks, timing) as indented JSON."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, sort_keys=False) + "\n")
    return path


def _fmt(value: Optional[float]) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.1f}"


def best_per_task(rows: Sequence[Mapping], tasks: Sequence[str]) -> Dict[str, List[str]]:
    """Names of the best student rows (kind single or ensemble) per task, as shown in the table
    (one decimal): every row tied for the best; no entry for a task where all students tie."""
    best: Dict[str, List[str]] = {}
    for task in tasks:
        higher = bool(TASK_METRICS[task]["higher_is_better"])
        scored = [
            (round(float(r["metrics"][task]), 1), r["name"])
            for r in rows
            if r["kind"] in ("single", "ensemble") and r["metrics"].get(task) is not None
        ]
        values = {v for v, _ in scored}
        if len(values) > 1:
            top = max(values) if higher else min(values)
            best[task] = [name for v, name in scored if v == top]
    return best


def markdown_table(results: Mapping) -> str:
    """The results as a Markdown table: one row per upstream, one column per task (best in bold)."""
    tasks = list(results["tasks"])
    rows = results["rows"]
    best = best_per_task(rows, tasks)
    arrows = {t: ("↑" if TASK_METRICS[t]["higher_is_better"] else "↓") for t in tasks}
    head = "| upstream | what it is | " + " | ".join(f"{column_label(t)} {arrows[t]}" for t in tasks) + " |"
    lines = [head, "|" + "---|" * (len(tasks) + 2)]
    for r in rows:
        cells = []
        spread = r.get("metrics_per_seed") or {}
        for t in tasks:
            text = _fmt(r["metrics"].get(t))
            if len(spread.get(t, ())) > 1:  # several seeds: the mean, and their standard deviation
                text += f" ± {float(np.std(spread[t], ddof=1)):.1f}"
            cells.append(f"**{text}**" if r["name"] in best.get(t, ()) else text)
        lines.append(f"| {r['name']} | {r['description']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_markdown(results: Mapping, path: Path, chart_name: Optional[str] = None) -> Path:
    """Write ``results.md``: settings, the table, the chart and the timings."""
    path = Path(path)
    timing = results.get("timing", {})
    parts: List[str] = [f"# EKD demo results ({results.get('preset', 'default')} preset)", ""]
    setup = results.get("setup")
    if setup:
        parts += [setup, ""]
    probes = results.get("probes")
    descriptions = {r["name"]: r["description"] for r in results["rows"]}
    if probes:
        parts += ["## What each student knows: linear probes of its frozen features", "",
                  probe_markdown(probes, descriptions), "", "How each task is probed:", ""]
        parts += protocol_lines(probes) + [""]
        parts += ["## s3prl's downstream harness (the SUPERB protocol, at mini scale)", "",
                  harness_label(results), ""]
    seeds = len(results.get("seeds") or [0])
    parts += [
        markdown_table(results),
        "",
        "Scores are on each mini task's test split, from s3prl's own downstream harness"
        + (f" (mean ± standard deviation over {seeds} distillation seeds)" if seeds > 1 else "") + ". "
        "Bold: the best student(s) per task (↑ higher is better, ↓ lower is better); none where "
        "every student scores the same.",
        "",
    ]
    if chart_name:
        parts += [f"![results per task]({chart_name})", ""]
    if timing:
        parts += ["| stage | seconds (this run) |", "|---|---|"]
        parts += [f"| {k} | {v:.0f} |" for k, v in timing.items()]
        parts += ["", "A stage whose outputs an earlier run left (same settings) is reused, not redone: "
                  "its time here is only the check.", ""]
    path.write_text("\n".join(parts))
    return path


def _probe_panels(axes, probes: Mapping) -> None:
    """Probe scores as bars with their 95 % bootstrap intervals as error bars, one panel per task."""
    rows = probes["rows"]
    colours = [KIND_COLOURS.get(r["kind"], "#333333") for r in rows]
    for ax, (task, spec) in zip(axes, probes["tasks"].items()):
        entries = [r["scores"][task] for r in rows]
        values = [e["value"] for e in entries]
        err = [[v - e["low"] for v, e in zip(values, entries)], [e["high"] - v for v, e in zip(values, entries)]]
        ax.bar(range(len(rows)), values, color=colours, yerr=err, capsize=2, error_kw={"lw": 0.8})
        arrow = "higher is better" if spec["higher_is_better"] else "lower is better"
        ax.set_title(f"probe: {task} {spec['metric']} ({arrow}), 95 % CI", fontsize=9)
        ax.set_xticks(range(len(rows)))
        ax.set_xticklabels([r["name"] for r in rows], rotation=60, ha="right", fontsize=7)
    for ax in axes[len(probes["tasks"]):]:
        ax.axis("off")


def write_chart(results: Mapping, path: Path) -> Path:
    """One bar panel per task, the upstreams side by side, coloured by kind; saved as PNG. With
    probe results, a first row of panels shows them with their intervals as error bars."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and in tests
    import matplotlib.pyplot as plt

    tasks = list(results["tasks"])
    rows = results["rows"]
    names = [r["name"] for r in rows]
    colours = [KIND_COLOURS.get(r["kind"], "#333333") for r in rows]
    probes = results.get("probes")
    n_rows = 2 if probes else 1
    width = max(len(tasks), len(probes["tasks"]) if probes else 0)
    fig, axes = plt.subplots(n_rows, width, figsize=(3.6 * width, 4.2 * n_rows), squeeze=False)
    if probes:
        _probe_panels(axes[0], probes)
    for ax in axes[-1][len(tasks):]:
        ax.axis("off")
    for ax, task in zip(axes[-1], tasks):
        values = [r["metrics"].get(task) for r in rows]
        heights = [v if v is not None else 0.0 for v in values]
        bars = ax.bar(range(len(rows)), heights, color=colours)
        for bar, v in zip(bars, values):
            ax.annotate(_fmt(v), (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                        ha="center", va="bottom", fontsize=7)
        arrow = "higher is better" if TASK_METRICS[task]["higher_is_better"] else "lower is better"
        ax.set_title(f"{'harness: ' if probes else ''}{column_label(task)} ({arrow})", fontsize=9)
        ax.set_xticks(range(len(rows)))
        ax.set_xticklabels(names, rotation=60, ha="right", fontsize=7)
        ax.margins(y=0.12)
    fig.suptitle(f"EKD demo ({results.get('preset', 'default')} preset): students distilled from tiny teachers", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(results: Mapping, out_dir: Path) -> Dict[str, Path]:
    """Write ``results.json``, ``results.md`` and ``results.png`` into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    chart = write_chart(results, out_dir / "results.png")
    return {
        "json": write_json(results, out_dir / "results.json"),
        "markdown": write_markdown(results, out_dir / "results.md", chart.name),
        "chart": chart,
    }
