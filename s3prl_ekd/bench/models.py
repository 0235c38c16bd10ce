"""Random-weight teachers of HuBERT / WavLM Base architecture, written as real checkpoints.

Throughput depends on the architecture, not on the weights, so the benchmark needs no download:
it writes s3prl-format checkpoints (``tiny_teachers`` with Base sizes) that both paths load the way
users load theirs, through s3prl's hub (``hubert_local`` / ``wavlm_local``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List

ARCHS = {"hubert": "hubert_local", "wavlm": "wavlm_local"}  # architecture -> s3prl hub entry


@dataclass(frozen=True)
class TeacherSize:
    """Transformer and conv sizes of a teacher (defaults: HuBERT / WavLM Base)."""

    layers: int = 12
    dim: int = 768
    ffn: int = 3072
    heads: int = 12
    conv_dim: int = 512
    conv_pos: int = 128
    conv_pos_groups: int = 16

    def conv_layers(self) -> str:
        """The fairseq conv stack string: Base's kernels and strides (320 samples a frame)."""
        c = self.conv_dim
        return f"[({c},10,5)] + [({c},3,2)] * 4 + [({c},2,2)] * 2"


def write_random_teachers(folder: Path, names: Dict[str, str], size: TeacherSize, seed: int = 0) -> List[dict]:
    """One random checkpoint per teacher (name -> architecture); returns the teacher specs
    (``name``, ``upstream``, ``ckpt``) as the pretraining config lists them."""
    from s3prl_ekd.teachers.tiny import write_tiny_hubert, write_tiny_wavlm

    folder = Path(folder)
    writers = {"hubert": write_tiny_hubert, "wavlm": write_tiny_wavlm}
    specs = []
    for i, (name, arch) in enumerate(names.items()):
        if arch not in ARCHS:
            raise ValueError(f"teacher {name!r}: unknown architecture {arch!r}; choose one of {', '.join(ARCHS)}")
        path = writers[arch](
            folder / f"{name}.pt",
            layers=size.layers,
            dim=size.dim,
            seed=seed + i,
            conv=size.conv_layers(),
            encoder_ffn_embed_dim=size.ffn,
            encoder_attention_heads=size.heads,
            conv_pos=size.conv_pos,
            conv_pos_groups=size.conv_pos_groups,
        )
        specs.append({"name": name, "upstream": ARCHS[arch], "ckpt": str(path)})
    return specs
