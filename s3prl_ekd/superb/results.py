"""``s3prl-ekd collect-results``: the SUPERB metric of each experiment folder, as one table.

Reads ``superb_result.json`` (written by :func:`s3prl_ekd.superb.runs.run_mini_task`); for a folder
trained and evaluated by hand with ``run/run_downstream.py``, pass ``--task`` and it reads the
metric the task printed into ``evaluate_<split>.log`` instead (save the evaluate output there).
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Dict, Iterable, List

RESULT_FILE = "superb_result.json"  # one finished SUPERB run, written by superb.run_mini_task
ORDER = ["pr", "sid", "er", "asr"]
HEADERS = {"pr": "PR PER% ↓", "sid": "SID Acc% ↑", "er": "ER Acc% ↑", "asr": "ASR WER% ↓"}


def collect_results(paths: Iterable[str]) -> List[Dict]:
    """Every ``superb_result.json`` in or below ``paths``, sorted by upstream then task."""
    rows = []
    for path in paths:
        if os.path.isfile(path):
            files = [path]
        elif os.path.isdir(path):
            files = [os.path.join(d, RESULT_FILE) for d, _, names in os.walk(path) if RESULT_FILE in names]
        else:
            raise FileNotFoundError(f"{path}: no such experiment folder or result file")
        for f in sorted(files):
            with open(f, encoding="utf-8") as fh:
                rows.append(json.load(fh))
    rank = {t: i for i, t in enumerate(ORDER)}
    return sorted(rows, key=lambda r: (r["upstream"], r.get("upstream_ckpt") or "", rank.get(r["task"], 99)))


def results_markdown(rows: List[Dict]) -> str:
    """One row per upstream (and checkpoint), one column per task; chance in brackets."""
    table: Dict[str, Dict[str, str]] = {}
    for r in rows:
        name = r["upstream"] + (f" ({os.path.basename(r['upstream_ckpt'])})" if r.get("upstream_ckpt") else "")
        cell = f"{r['value']:.2f}"
        if r.get("chance") is not None:
            cell += f" (chance {r['chance']:.1f})"
        for metric, value in sorted((r.get("extra") or {}).items()):
            cell += f" ({metric.upper()} {value:.2f})"
        table.setdefault(name, {})[r["task"]] = cell
    tasks = [t for t in ORDER if any(t in cells for cells in table.values())]
    lines = ["| upstream | " + " | ".join(HEADERS[t] for t in tasks) + " |",
             "|---|" + "---|" * len(tasks)]
    for name, cells in table.items():
        lines.append(f"| {name} | " + " | ".join(cells.get(t, "–") for t in tasks) + " |")
    return "\n".join(lines) + "\n"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``collect-results``."""
    parser.add_argument("paths", nargs="+", help="experiment folders (or folders holding them)")
    parser.add_argument("--json", help="also write the rows as JSON here")
    parser.add_argument("--markdown", help="also write the table as markdown here")


def run(args: argparse.Namespace) -> int:
    """Print the markdown table; optionally write it and the JSON rows."""
    try:
        rows = collect_results(args.paths)
    except FileNotFoundError as e:
        raise SystemExit(f"collect-results: {e}")
    if not rows:
        raise SystemExit(f"collect-results: no superb_result.json under {args.paths}")
    text = results_markdown(rows)
    print(text, end="")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(rows, f, indent=1)
    if args.markdown:
        with open(args.markdown, "w", encoding="utf-8") as f:
            f.write(text)
    return 0
