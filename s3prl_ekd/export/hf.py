"""``s3prl-ekd export-hf CKPT OUT``: the student as a ``transformers`` HuBERT folder.

The folder (no pickle in it)::

    OUT/config.json               HubertConfig (model_type hubert, architectures HubertModel)
    OUT/model.safetensors         the body's weights (prediction heads dropped)
    OUT/preprocessor_config.json  Wav2Vec2FeatureExtractor: 16 kHz, no normalisation
    OUT/README.md                 model card (hf_card.py)

``transformers.AutoModel.from_pretrained(OUT)`` loads it as a plain ``HubertModel``, and
``-u ekd_student -k OUT`` reads it back as the student (hf_format.py).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Optional

from s3prl_ekd.distill.student_checkpoint import load_student
from s3prl_ekd.export.hf_card import ResultsFileError, card_text, results_table
from s3prl_ekd.export.hf_format import HFFormatError, not_carried, to_hubert_model
from s3prl_ekd.io import SAMPLE_RATE
from s3prl_ekd.io.checkpoint import CheckpointError
from s3prl_ekd.superb.submission.build import describe

FILES = ("config.json", "model.safetensors", "preprocessor_config.json", "README.md")


class ExportError(RuntimeError):
    """An output folder that cannot be written."""


def feature_extractor(group_norm: bool) -> "transformers.Wav2Vec2FeatureExtractor":
    """The student's input processing: raw 16 kHz samples; an attention mask only where it helps."""
    from transformers import Wav2Vec2FeatureExtractor

    return Wav2Vec2FeatureExtractor(
        feature_size=1,
        sampling_rate=SAMPLE_RATE,
        padding_value=0.0,
        do_normalize=False,  # the student was distilled on raw waveforms
        # a group-norm extractor's features change with padding, mask or not (as HuBERT Base)
        return_attention_mask=not group_norm,
    )


def export_hf(
    ckpt: os.PathLike | str,
    out_dir: os.PathLike | str,
    results: Optional[os.PathLike | str] = None,
    license_id: str = "apache-2.0",
    force: bool = False,
) -> Path:
    """Write the transformers folder of a student checkpoint; returns the folder."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out} exists and is not a folder: give a folder path")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise ExportError(f"{out} is not empty: choose a new folder or pass --force to overwrite its files")
    student, state = load_student(ckpt)
    model = to_hubert_model(student)  # HFFormatError names an option the format cannot express
    info = describe(student, state, ckpt, include_heads=False)
    group_norm = student.config["extractor_mode"] == "default"
    info.update(
        encoder_layers=student.config["encoder_layers"],
        not_carried=not_carried(student.config),
        group_norm=group_norm,
        results_file=os.path.basename(str(results)) if results else None,
        # HubertModel always projects; a student without a projection gets the identity (not counted)
        identity_projection=model.num_parameters() - info["num_parameters"],
    )
    table = results_table(results) if results else None
    card = card_text(info, out.name or str(out), license_id, table)

    out.mkdir(parents=True, exist_ok=True)
    # written next to OUT, then moved in file by file: OUT never holds a half-written file
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.", dir=out.parent) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        feature_extractor(group_norm).save_pretrained(tmp)
        Path(tmp, "README.md").write_text(card, encoding="utf-8")
        written = sorted(os.listdir(tmp))
        if written != sorted(FILES):
            raise ExportError(f"transformers wrote {written}, expected {sorted(FILES)}: nothing was moved to {out}")
        for name in FILES:
            os.replace(Path(tmp, name), out / name)
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``s3prl-ekd export-hf``."""
    parser.add_argument("ckpt", help="student checkpoint written by s3prl-ekd (pretraining or save_student)")
    parser.add_argument("out", help="folder to write (must be new or empty unless --force)")
    parser.add_argument(
        "--results",
        help="results to put in the model card: the demo's results.json or `collect-results --json` output",
    )
    parser.add_argument("--license", dest="license_id", default="apache-2.0",
                        help="license identifier for the model card (default: apache-2.0)")
    parser.add_argument("--force", action="store_true", help="overwrite the files of a non-empty folder")


def run(args: argparse.Namespace) -> int:
    """Export, then print what was written and how to load it."""
    try:
        out = export_hf(args.ckpt, args.out, args.results, args.license_id, args.force)
    except (ExportError, CheckpointError, HFFormatError, ResultsFileError) as e:
        print(f"export-hf FAILED: {e}", file=sys.stderr)
        return 1
    print(f"wrote transformers folder {out}: {', '.join(FILES)}")
    print(f"load it: transformers.AutoModel.from_pretrained({str(out)!r})   or: -u ekd_student -k {out}")
    return 0
