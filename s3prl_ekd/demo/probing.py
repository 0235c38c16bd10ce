"""The demo's probe stage: linear probes with bootstrap intervals on every row's frozen features.

Features are cached per upstream under ``probes/features/`` and the finished result under
``probes/probes.json`` (reused while the upstreams, corpus and probe settings are unchanged).
With several distillation seeds, each row's seeds are pooled (see :mod:`s3prl_ekd.probe.stats`).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Dict, List, Mapping, Sequence

from tqdm import tqdm

from s3prl_ekd.demo.settings import fingerprint
from s3prl_ekd.probe.data import read_probe_corpus
from s3prl_ekd.probe.evaluate import ProbeSettings, run_probes
from s3prl_ekd.probe.features import UpstreamSpec, cache_key


def probe_settings(settings: Mapping) -> ProbeSettings:
    """The probes' settings from the demo's ``probes:`` block (seed and threads from the demo's)."""
    block = {k: v for k, v in dict(settings["probes"]).items() if k != "enabled"}
    return ProbeSettings.from_mapping({**block, "seed": int(settings["seed"]),
                                       "threads": int(settings["threads"])})


def probe_runs(rows_per_seed: Sequence[Sequence[Mapping]]) -> Dict[str, List[UpstreamSpec]]:
    """Row name -> its upstream in each seed (an upstream no seed changes, such as fbank, once)."""
    runs: Dict[str, List[UpstreamSpec]] = {}
    for rows in rows_per_seed:
        for row in rows:
            spec = UpstreamSpec(row["name"], row["upstream"], row.get("ckpt"), row.get("kind", ""))
            if spec not in runs.setdefault(row["name"], []):
                runs[row["name"]].append(spec)
    return runs


def probe_step(settings: Mapping, probes_dir: Path, corpus_root: str,
               rows_per_seed: Sequence[Sequence[Mapping]]) -> Dict:
    """Probe every row (every seed); reuses ``probes.json`` when nothing it depends on changed."""
    ps = probe_settings(settings)
    corpus = read_probe_corpus(corpus_root, ps.max_train_frames, ps.seed)
    runs = probe_runs(rows_per_seed)
    # how many processes extract does not change a number: not part of the key
    key = fingerprint(repr(replace(ps, workers=1)), {n: [cache_key(s, corpus, ps.layers) + s.kind for s in specs]
                                 for n, specs in runs.items()})
    done = Path(probes_dir) / "probes.json"
    if done.is_file():
        old = json.loads(done.read_text())
        if old.get("key") == key:
            return old["probes"]
    probes = run_probes(runs, corpus, ps, cache_dir=str(Path(probes_dir) / "features"), say=tqdm.write)
    done.parent.mkdir(parents=True, exist_ok=True)
    done.write_text(json.dumps({"key": key, "probes": probes}, indent=1) + "\n")
    return probes
