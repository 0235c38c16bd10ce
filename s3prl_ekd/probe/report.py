"""The probe results as text: a Markdown table with intervals and a generated reading of the differences."""

from __future__ import annotations

from typing import List, Mapping


def _cell(entry: Mapping) -> str:
    return f"{entry['value']:.1f} [{entry['low']:.1f}, {entry['high']:.1f}]"


def _arrow(task_spec: Mapping) -> str:
    return "↑" if task_spec["higher_is_better"] else "↓"


def probe_table(probes: Mapping, descriptions: Mapping[str, str] = {}) -> str:
    """One row per upstream, one column per task: ``value [low, high]`` (95 % bootstrap interval)."""
    tasks = probes["tasks"]
    seeds = max(len(r["scores"][t]["per_seed"]) for r in probes["rows"] for t in tasks)
    head = ["upstream"] + (["what it is"] if descriptions else [])
    head += [f"{t} {spec['metric']} {_arrow(spec)}" for t, spec in tasks.items()]
    if seeds > 1:
        head += [f"{t} per seed" for t in tasks]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in probes["rows"]:
        cells = [row["name"]] + ([descriptions.get(row["name"], "")] if descriptions else [])
        cells += [_cell(row["scores"][t]) for t in tasks]
        if seeds > 1:
            cells += [" / ".join(f"{v:.1f}" for v in row["scores"][t]["per_seed"]) for t in tasks]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _diff(c: Mapping) -> str:
    text = f"{c['value']:+.1f} [{c['low']:+.1f}, {c['high']:+.1f}]"
    if c.get("seeds", 1) > 1:
        text += f", same sign in {c['seeds_same_sign']}/{c['seeds']} seeds"
    return text


def _verdict(c: Mapping) -> str:
    if not c["significant"]:
        return "not significant"
    return "significantly better" if c["a_better"] else "significantly worse"


def reading(probes: Mapping) -> List[str]:
    """One Markdown bullet per task saying which paired differences exclude 0 (95 %)."""
    lines = []
    for task, spec in probes["tasks"].items():
        comps = [c for c in probes["comparisons"] if c["task"] == task]
        if not comps:
            continue
        parts: List[str] = []
        vs_best = [c for c in comps if c["why"].startswith("ensemble vs best")]
        if vs_best:
            best = vs_best[0]["b"]
            score = next(r["scores"][task]["value"] for r in probes["rows"] if r["name"] == best)
            sig = [c for c in vs_best if c["significant"]]
            head = (f"against the best single-teacher student, {best} ({score:.1f}): "
                    + "; ".join(f"{c['a']} {_diff(c)} ({_verdict(c)})" for c in vs_best))
            if not sig:
                head += " — no ensemble differs significantly from it"
            parts.append(head)
        schemes = [c for c in comps if c["why"] == "scheme vs scheme"]
        if schemes:
            sig = [c for c in schemes if c["significant"]]
            parts.append("between schemes: " + ("; ".join(
                f"{c['a']} vs {c['b']} {_diff(c)} ({'better' if c['a_better'] else 'worse'})" for c in sig)
                if sig else "no two schemes differ significantly"))
        pairs = [c for c in comps if c["why"] == "pair"]
        if pairs:
            sig = [c for c in pairs if c["significant"]]
            parts.append("; ".join(f"{c['a']} vs {c['b']} {_diff(c)} ({'better' if c['a_better'] else 'worse'})"
                                   for c in sig) if sig else "no two rows differ significantly")
        direction = "higher" if spec["higher_is_better"] else "lower"
        lines.append(f"- **{task}** ({spec['metric']}, {direction} is better): " + "; ".join(parts) + ".")
    return lines


def probe_markdown(probes: Mapping, descriptions: Mapping[str, str] = {}) -> str:
    """The table, what the brackets mean, and the reading."""
    s = probes["settings"]
    items = ", ".join(f"{t} {n}" for t, n in s["items"].items())
    seeds = max(len(r["scores"][t]["per_seed"]) for r in probes["rows"] for t in probes["tasks"])
    parts = [
        probe_table(probes, descriptions), "",
        f"Linear probes (scikit-learn logistic regression on standardised frozen features) with 95 % "
        f"bootstrap intervals over the test items ({items}; {s['draws']} draws)"
        + (f"; scores are means over {seeds} distillation seeds, the interval that of the mean for these "
           "items, and the per-seed columns show the seed-to-seed spread" if seeds > 1 else "")
        + ". Differences below are paired (the same draws for both rows); *significant* means the "
        "95 % interval of the difference excludes 0.", "",
    ]
    parts += reading(probes)
    return "\n".join(parts)


def protocol_lines(probes: Mapping) -> List[str]:
    """How each task was probed (one bullet per task)."""
    return [f"- **{t}**: {spec['protocol']}." for t, spec in probes["tasks"].items()]


__all__ = ["probe_table", "reading", "probe_markdown", "protocol_lines"]
