"""The demo's three teachers: tiny HuBERT / WavLM checkpoints, each trained on its own job, cached.

Each teacher is written first at random init by :mod:`s3prl_ekd.teachers.tiny` in its real format,
loaded back with s3prl's own loader for that format (``load_converted_model`` for HuBERT, the
``WavLM`` class for WavLM), trained by :func:`~s3prl_ekd.demo.teacher_training.train_teacher`, and
saved again in the same format, so ``-u hubert_local`` / ``-u wavlm_local`` (and the teacher
ensemble) load the trained weights like any other checkpoint.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Dict, List, Mapping, Tuple

import torch

from s3prl_ekd.corpus import read_manifest
from s3prl_ekd.demo.settings import fingerprint
from s3prl_ekd.demo.teacher_data import cap_length, librispeech_phones, speaker_utterances
from s3prl_ekd.demo.teacher_training import LabelledUtterance, TeacherTrainingError, train_teacher
from s3prl_ekd.io.atomic import atomic_save
from s3prl_ekd.io.checkpoint import safe_load
from s3prl_ekd.teachers.tiny import tiny_hubert_state, tiny_wavlm_state

FORMATS = {"hubert_local": "HuBERT (s3prl's converted format)", "wavlm_local": "WavLM (its own format)"}


def _build_state(upstream: str, model: Mapping, seed: int) -> dict:
    """A random tiny teacher of the given kind, in its checkpoint format."""
    kwargs = dict(layers=int(model["encoder_layers"]), dim=int(model["encoder_embed_dim"]),
                  conv=str(model["conv_feature_layers"]), seed=seed)
    if "conv_pos_groups" in model:
        kwargs["conv_pos_groups"] = int(model["conv_pos_groups"])
    if upstream == "hubert_local":
        return tiny_hubert_state(**kwargs)
    if upstream == "wavlm_local":
        return tiny_wavlm_state(**kwargs)
    raise TeacherTrainingError(
        f"teachers.roster: upstream {upstream!r} cannot be trained by the demo: use one of {sorted(FORMATS)}"
    )


def _model_from_state(upstream: str, state: dict, path: Path) -> torch.nn.Module:
    """The s3prl model class inside the checkpoint, built by s3prl's own code for that format."""
    if upstream == "hubert_local":
        from s3prl.upstream.hubert.convert import load_converted_model

        atomic_save(state, path)  # the converted format is read by s3prl from a file
        model, _ = load_converted_model(str(path))
    else:
        from s3prl.upstream.wavlm.WavLM import WavLM, WavLMConfig

        model = WavLM(WavLMConfig(state["cfg"]))
        model.load_state_dict(state["model"])
    model.encoder.layerdrop = 0.0  # s3prl's experts switch it off too; keeps training deterministic
    return model


def _store_weights(upstream: str, state: dict, model: torch.nn.Module) -> dict:
    weights = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    if upstream == "hubert_local":
        state["model_weight"] = weights
    else:
        state["model"] = weights
    return state


def make_teachers(settings: Mapping, corpus_root: str, out_dir: Path, seed: int) -> Dict[str, Dict]:
    """Train (or reuse) every teacher of ``settings`` (``teachers`` section); name -> spec.

    A spec is what :class:`s3prl_ekd.teachers.ensemble.TeacherEnsemble` takes: ``{"name", "upstream", "ckpt"}``.
    A teacher is reused when its checkpoint and a record of the same settings exist.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    roster = settings["roster"]
    data: Dict[str, Tuple[List[LabelledUtterance], int]] = {}
    # the corpus's own settings hash: a remade corpus retrains the teachers
    corpus_key = (read_manifest(corpus_root) or {}).get("settings_hash", corpus_root)
    specs: Dict[str, Dict] = {}
    for k, (name, entry) in enumerate(roster.items()):
        upstream = entry["upstream"]
        ckpt = out_dir / f"{name}.pt"
        record = out_dir / f"{name}.json"
        key = fingerprint(settings["model"], settings["training"], dict(entry), seed + k, corpus_key)
        specs[name] = {"name": name, "upstream": upstream, "ckpt": str(ckpt)}
        if ckpt.is_file() and record.is_file() and json.loads(record.read_text()).get("key") == key:
            continue
        if not data:
            data = _load_data(corpus_root, settings["training"]["max_seconds"])
        objective = entry["objective"]
        utts, n_labels = data[objective]
        state = _build_state(upstream, settings["model"], seed + k)
        model = _model_from_state(upstream, state, ckpt)
        distorter = _distorter(entry.get("distortions"))
        start = time.time()
        torch.manual_seed(seed + k)
        log = train_teacher(
            model, utts, objective, n_labels,
            steps=int(settings["training"]["steps"]), batch_size=int(settings["training"]["batch_size"]),
            lr=float(settings["training"]["lr"]), seed=seed + k, distorter=distorter,
            align_fraction=float(settings["training"]["align_fraction"]),
            desc=f"teacher {name} ({objective}{', distorted' if distorter else ''})",
        )
        atomic_save(_store_weights(upstream, state, model), ckpt)
        safe_load(ckpt)  # proves the file reads back with weights_only=True
        log.update(key=key, name=name, upstream=upstream, objective=objective,
                   distorted=distorter is not None, seconds=round(time.time() - start, 1))
        record.write_text(json.dumps(log, indent=1) + "\n")
        print(f"[demo] teacher {name}: {objective}, loss {log['first_loss']:.2f} over the first steps, "
              f"{log['last_loss']:.2f} ({log['last_loss_is']}; chance {log['chance_loss']:.2f}) over the "
              f"last, {log['seconds']:.0f} s -> {ckpt}")
    return specs


def _load_data(corpus_root: str, max_seconds: float) -> Dict[str, Tuple[List[LabelledUtterance], int]]:
    libri, phones = librispeech_phones(Path(corpus_root))
    speakers, n_speakers = speaker_utterances(Path(corpus_root), libri)
    return {"phones": (cap_length(libri, max_seconds), len(phones)),
            "speaker": (cap_length(speakers, max_seconds), n_speakers)}


def _distorter(config):
    from s3prl_ekd.pretrain.ekd.distortions import Distorter

    distorter = Distorter(config)  # none given: the defaults (off)
    return distorter if distorter.enabled else None
