"""The built-in speech corpus: eSpeak NG speech in the layouts s3prl's SUPERB tasks read.

    from s3prl_ekd.corpus import make_corpus
    paths = make_corpus("data/corpus", size="demo", seed=0)   # or size="tiny"
    paths.librispeech, paths.len_for_bucket, paths.lexicon       # ASR, PR (and pretraining)
    paths.voxceleb1, paths.iden_split                            # SID
    paths.iemocap, paths.iemocap_meta_data                       # ER

Layout under ``out_dir`` (16 kHz mono, 16-bit)::

    LibriSpeech/{train-clean-100,dev-clean,test-clean}/<spk>/<chap>/<spk>-<chap>-<nnnn>.flac
    LibriSpeech/.../<spk>-<chap>.trans.txt          len_for_bucket/<split>.csv
    lexicon/librispeech-lexicon.txt                 (ARPAbet from eSpeak NG's IPA)
    alignments/<split>.txt                          (phone start/end per LibriSpeech utterance)
    VoxCeleb1/dev/wav/id1xxxx/<video>/<nnnnn>.wav   VoxCeleb1/iden_split.txt
    IEMOCAP/SessionN/sentences/wav/<dialog>/<utt>.wav   IEMOCAP/SessionN/dialog/EmoEvaluation/*.txt
    IEMOCAP/meta_data/SessionN/{train,test}_meta_data.json
    manifest.json                                   (settings, their hash, counts: the cache key)

Speakers are eSpeak NG accents x voice variants x pitch; emotions are prosody classes (pitch,
range, rate, volume); sentences are random draws from ``words.txt``. The same seed and size give
byte-identical files; a finished corpus with the same settings is reused, not remade.
eSpeak NG (``espeakng-loader``) is GPL-3.0-or-later.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass
from typing import Callable, Dict, Optional, Union

from s3prl_ekd.corpus.plan import SIZES, CorpusSize, make_plan, resolve_size
from s3prl_ekd.io import SAMPLE_RATE
from s3prl_ekd.io.atomic import atomic_write_text

FORMAT = "s3prl-ekd/corpus"
# Bump when the generator's output changes for the same settings (invalidates caches).
GENERATOR_VERSION = 3
OWNED = ("LibriSpeech", "len_for_bucket", "lexicon", "alignments", "VoxCeleb1", "IEMOCAP")

__all__ = ["CorpusPaths", "CorpusSize", "SIZES", "make_corpus", "corpus_paths", "CorpusError"]


class CorpusError(RuntimeError):
    """The output folder cannot hold the corpus (not empty and not one of ours)."""


@dataclass(frozen=True)
class CorpusPaths:
    """Where each layout of a made corpus lies (absolute paths)."""

    root: str
    librispeech: str
    len_for_bucket: str
    lexicon: str
    alignments: str
    voxceleb1: str
    iden_split: str
    iemocap: str
    iemocap_meta_data: str
    manifest: str

    def to_dict(self) -> Dict[str, str]:
        return asdict(self)


def corpus_paths(out_dir: str) -> CorpusPaths:
    """The paths of each layout under ``out_dir`` (whether or not it has been made)."""
    r = os.path.abspath(out_dir)
    return CorpusPaths(
        root=r,
        librispeech=os.path.join(r, "LibriSpeech"),
        len_for_bucket=os.path.join(r, "len_for_bucket"),
        lexicon=os.path.join(r, "lexicon", "librispeech-lexicon.txt"),
        alignments=os.path.join(r, "alignments"),
        voxceleb1=os.path.join(r, "VoxCeleb1"),
        iden_split=os.path.join(r, "VoxCeleb1", "iden_split.txt"),
        iemocap=os.path.join(r, "IEMOCAP"),
        iemocap_meta_data=os.path.join(r, "IEMOCAP", "meta_data"),
        manifest=os.path.join(r, "manifest.json"),
    )


def _settings(size: CorpusSize, seed: int) -> Dict:
    from importlib.metadata import version

    from s3prl_ekd.corpus.text import WORDS_FILE

    with open(WORDS_FILE, "rb") as f:
        words_sha = hashlib.sha256(f.read()).hexdigest()
    return {"generator_version": GENERATOR_VERSION, "seed": int(seed), "size": size.to_dict(),
            "espeakng_loader": version("espeakng-loader"), "words_sha256": words_sha}


def _hash(settings: Dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def read_manifest(out_dir: str) -> Optional[Dict]:
    """The corpus manifest under ``out_dir``, or None if there is no finished corpus."""
    path = corpus_paths(out_dir).manifest
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    return data if data.get("format") == FORMAT else None


def make_corpus(
    out_dir: str,
    size: Union[str, CorpusSize, Dict] = "demo",
    seed: int = 0,
    workers: Optional[int] = None,
    force: bool = False,
    progress: Optional[Callable[[str], None]] = None,
    **size_overrides: int,
) -> CorpusPaths:
    """Make (or reuse) the corpus under ``out_dir``; returns the paths of each layout."""
    from s3prl_ekd.corpus import layouts
    from s3prl_ekd.corpus.alignment import write_alignments
    from s3prl_ekd.corpus.synth import default_progress, synthesise
    from s3prl_ekd.corpus.text import load_words, make_lexicon

    say = progress or default_progress
    size = resolve_size(size, **size_overrides)
    settings = _settings(size, seed)
    digest = _hash(settings)
    paths = corpus_paths(out_dir)
    old = read_manifest(out_dir)
    if old is not None and old.get("settings_hash") == digest and not force:
        say(f"[corpus] {paths.root}: up to date (settings {digest}), nothing to do")
        return paths
    if os.path.isdir(paths.root) and os.listdir(paths.root) and old is None:
        leftovers = set(os.listdir(paths.root)) - set(OWNED) - {"manifest.json"}
        if leftovers:
            raise CorpusError(f"{paths.root} holds files that are not an s3prl-ekd corpus "
                              f"({sorted(leftovers)[:3]}): choose an empty or new folder")
    # Remake from scratch: remove what an earlier (other settings or unfinished) run left.
    if os.path.exists(paths.manifest):
        os.remove(paths.manifest)
    for name in OWNED:
        shutil.rmtree(os.path.join(paths.root, name), ignore_errors=True)
    os.makedirs(paths.root, exist_ok=True)

    start = time.time()
    plan = [u.to_dict() for u in make_plan(size, seed)]
    say(f"[corpus] making {len(plan)} utterances under {paths.root} (seed {seed}, settings {digest})")
    lengths, segments = synthesise(plan, paths.root, seed, workers=workers, progress=say)
    by_layout: Dict[str, list] = {"librispeech": [], "voxceleb1": [], "iemocap": []}
    aligned: Dict[str, list] = {}
    for utt, n, segs in zip(plan, lengths, segments):
        by_layout[utt["meta"]["layout"]].append((utt, n))
        if utt["meta"]["layout"] == "librispeech":
            aligned.setdefault(utt["meta"]["split"], []).append((utt["meta"]["id"], segs))
    unzip = lambda items: ([u for u, _ in items], [n for _, n in items])  # noqa: E731
    layouts.write_librispeech(paths.root, *unzip(by_layout["librispeech"]))
    layouts.write_voxceleb1(paths.root, unzip(by_layout["voxceleb1"])[0])
    layouts.write_iemocap(paths.root, *unzip(by_layout["iemocap"]))
    layouts.write_lexicon(paths.root, make_lexicon(load_words()))
    write_alignments(paths.root, aligned)

    manifest = {
        "format": FORMAT, "settings": settings, "settings_hash": digest,
        "counts": {k: len(v) for k, v in by_layout.items()},
        "seconds_of_audio": round(sum(lengths) / SAMPLE_RATE, 1),
        "paths": {k: os.path.relpath(v, paths.root) for k, v in paths.to_dict().items()},
    }
    atomic_write_text(paths.manifest, json.dumps(manifest, indent=1) + "\n")  # last: marks it done
    say(f"[corpus] done: {len(plan)} files, {manifest['seconds_of_audio']} s of speech "
        f"in {time.time() - start:.1f} s")
    return paths
