"""The s3prl upstream expert of the ensemble-distilled student (``-u ekd_student``)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Dict, List, Mapping, Optional

import torch
import yaml
from s3prl.upstream.interfaces import UpstreamBase

from s3prl_ekd.config.reader import from_mapping, to_dict
from s3prl_ekd.config.values import ConfigValueError
from s3prl_ekd.distill.student import EKDStudent
from s3prl_ekd.export.hf_format import load_any_student
from s3prl_ekd.io.audio import check_features_finite, check_waveforms


@dataclass(frozen=True)
class ExpertOptions:
    """Upstream options (``-g OPTIONS.yaml`` or keyword arguments)."""

    # as the paper's hidden-set entries: heads dropped, hidden states = projected extractor output + layers
    include_heads: bool = False


OPTION_KEYS = tuple(f.name for f in fields(ExpertOptions))


def read_options(model_config: Optional[str], overrides: Mapping) -> Dict[str, object]:
    """Expert options from an optional YAML file and keyword overrides; unknown keys are errors."""
    options: Dict[str, object] = {}
    if model_config:
        with open(model_config) as f:
            loaded = yaml.safe_load(f) or {}
        if not isinstance(loaded, Mapping):
            raise ValueError(f"upstream options file {model_config} must hold a mapping, e.g. `include_heads: true`")
        options.update(loaded)
    options.update({k: v for k, v in overrides.items() if k in OPTION_KEYS})
    try:
        return to_dict(from_mapping(ExpertOptions, options))
    except ConfigValueError as e:
        raise ConfigValueError(f"ekd_student options ({model_config or 'keyword arguments'}): {e}") from None


def check_heads_fit(student: EKDStudent) -> None:
    """Raise ValueError unless the student's heads can be appended to its hidden states."""
    plan = student.plan
    dim = student.config["encoder_embed_dim"]
    sizes = {len(idx) for idx in plan.groups().values()}
    dims = {t.dim for t in plan.targets}
    if dims != {dim} or len(sizes) != 1:
        raise ValueError(
            f"include_heads needs every head of the plan to output the encoder's {dim} dims and "
            f"every head group the same number of heads; this plan ({plan.scheme}) has head dims "
            f"{sorted(dims)}: set include_heads: false (the default)"
        )


class UpstreamExpert(UpstreamBase):
    """``forward(wavs) -> {"hidden_states": [proj, layer 1, ..., (heads)], "last_hidden_state"}``."""

    def __init__(self, ckpt: str, model_config: Optional[str] = None, **kwargs):
        options = read_options(model_config, kwargs)
        super().__init__(**{k: v for k, v in kwargs.items() if k not in OPTION_KEYS})
        # a student checkpoint file, or a transformers HuBERT folder (export-hf's, or DistilHuBERT-shaped)
        self.student, state = load_any_student(ckpt)
        self.include_heads = bool(options["include_heads"])
        self.step = state.get("Step")
        if self.include_heads:
            check_heads_fit(self.student)

    def get_downsample_rates(self, key: str) -> int:
        return self.student.downsample_rate

    def forward(self, wavs: List[torch.Tensor]) -> Dict[str, object]:
        # sub-frame waveforms are zero-padded to one frame; NaN/inf is an error naming the index
        wavs = check_waveforms(wavs, self.student.receptive_field)
        out = self.student(wavs, with_heads=self.include_heads)
        check_features_finite(wavs, out.hidden_states, out.frame_lengths)
        hidden = list(out.hidden_states)
        if self.include_heads and out.predictions:
            groups = list(self.student.plan.groups().values())
            # several teachers' heads (multihead): average the groups position by position
            for j in range(len(groups[0])):
                hidden.append(torch.stack([out.predictions[g[j]] for g in groups]).mean(0))
        return {"hidden_states": hidden, "last_hidden_state": hidden[-1]}
