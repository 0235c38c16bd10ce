"""Frozen teachers: loaded through s3prl's hub, checked against the target plan, cut to the depth it needs.

A teacher is given as a spec (a mapping, as in the YAML config)::

    {"name": "hubert", "upstream": "hubert_base"}                        # any s3prl hub name
    {"name": "mine", "upstream": "hubert_local", "ckpt": "my_hubert.pt"}  # s3prl-converted or raw fairseq file
    {"name": "robust", "upstream": "fairseq", "ckpt": "checkpoint_best.pt", "layers": [4, 8, 12], "weight": 1.0}

Every teacher is an s3prl upstream expert (``s3prl.hub.<upstream>``), so its hidden states come
in s3prl's order: layer 0 is the pre-transformer feature, layer k the output of block k. Raw
fairseq HuBERT checkpoints are converted without fairseq (``fairseq_import``) and then loaded by
``hubert_local`` like any converted checkpoint.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Dict, List, Mapping, Optional, Sequence

import torch
from torch import nn

from s3prl_ekd.distill.masked_conv import exact_lengths, supports_masking
from s3prl_ekd.distill.targets import TargetPlan, align_frames
from s3prl_ekd.io import SAMPLE_RATE
from s3prl_ekd.teachers.autocast_check import AutocastAgreement, compare_hidden
from s3prl_ekd.teachers.loading import load_upstream
from s3prl_ekd.teachers.spec import TeacherError, TeacherSpec
from s3prl_ekd.teachers.speedups import TeacherSpeedups, call_per_length, compile_blocks

logger = logging.getLogger(__name__)

PROBE_SAMPLES = SAMPLE_RATE  # one second: long enough for every s3prl upstream's conv stack


class Teacher(nn.Module):
    """One frozen s3prl upstream expert: eval mode, no grad, layerdrop off; optionally cut short."""

    def __init__(self, spec: TeacherSpec):
        super().__init__()
        self.spec = spec
        self.name = spec.name
        self.expert = load_upstream(spec.upstream, spec.ckpt, f"teacher {spec.name!r}")
        self.expert.requires_grad_(False)
        self.expert.eval()
        _disable_layerdrop(self.expert)
        hidden = self._probe()
        self.num_layers = len(hidden) - 1  # hidden state 0 is the pre-transformer feature
        self.dim = int(hidden[-1].shape[-1])
        self.downsample_rate = _downsample_rate(self.expert)
        self.depth = self.num_layers  # layers actually computed (see ``truncate``)

    def _probe(self) -> List[torch.Tensor]:
        g = torch.Generator().manual_seed(0)
        wav = torch.randn(PROBE_SAMPLES, generator=g)
        with torch.no_grad():
            return list(self.expert([wav])["hidden_states"])

    def train(self, mode: bool = True) -> "Teacher":
        """Teachers never train: stay in eval mode (no dropout) whatever the parent asks."""
        return super().train(False)

    def truncate(self, depth: int) -> bool:
        """Compute only up to hidden state ``depth``; True when the model was cut.

        HuBERT / WavLM / wav2vec 2.0 style models (``model.encoder.layers`` with s3prl's hooks)
        drop their later blocks; the kept hidden states are unchanged. Other models run whole.
        """
        if depth > self.depth:
            raise TeacherError(
                f"teacher {self.name!r} computes {self.depth} layers, but layer {depth} is needed: "
                f"it has {self.num_layers} layers (was it cut for another plan? build the ensemble again)"
            )
        model = getattr(self.expert, "model", None)
        encoder = getattr(model, "encoder", None)
        layers = getattr(encoder, "layers", None)
        hooks = getattr(self.expert, "hooks", None)
        path = "self.model.encoder.layers"
        hook_ids = {h.unique_identifier for h in hooks or []}
        known = (
            isinstance(layers, nn.ModuleList)
            and len(layers) == self.num_layers
            and hasattr(encoder, "layer_norm_first")
            and "self.model.encoder" in hook_ids
            and all(f"{path}[{i}]" in hook_ids for i in range(len(layers)))
        )
        keep = max(depth, 1)  # hidden 0 is the input of block 1: keep one block to hook it
        if not known or keep >= len(layers or []):
            return False
        # s3prl's experts hook the input of every block and the encoder's output; without the
        # dropped blocks, the encoder's output is the output of block `keep`, the hidden state
        # `keep`, except for pre-LN models, which layer-norm it at the end: skip that norm.
        for i in range(keep, len(layers)):
            self.expert.remove_hook(f"{path}[{i}]")
        encoder.layers = nn.ModuleList(list(layers)[:keep])
        if encoder.layer_norm_first:
            encoder.layer_norm = nn.Identity()
        self.depth = keep
        return True

    def forward(self, wavs: List[torch.Tensor]) -> List[torch.Tensor]:
        """Hidden states 0..depth (B x T x D) of a list of unpadded waveforms; with a conv
        extractor we can mask (HuBERT, WavLM), each utterance's as alone (``masked_conv``)."""
        model = getattr(self.expert, "model", None)
        if len({len(w) for w in wavs}) < 2 or not supports_masking(getattr(model, "feature_extractor", None)):
            return list(self.expert(wavs)["hidden_states"])
        lengths = torch.tensor([len(w) for w in wavs]).to(wavs[0].device, non_blocking=True)
        with exact_lengths(model, lengths):
            return list(self.expert(wavs)["hidden_states"])


def _disable_layerdrop(expert: nn.Module) -> None:
    """Switch off layerdrop everywhere: a teacher must always give every layer."""
    if hasattr(expert, "set_layer_drop"):
        expert.set_layer_drop(0.0)
    for module in expert.modules():
        if isinstance(getattr(module, "layerdrop", None), float):
            module.layerdrop = 0.0


def _downsample_rate(expert: nn.Module) -> int:
    """Samples per frame: the product of the conv extractor's strides, else what the expert says."""
    extractor = getattr(getattr(expert, "model", None), "feature_extractor", None)
    if isinstance(extractor, nn.Module):
        strides = [m.stride[0] for m in extractor.modules() if isinstance(m, nn.Conv1d)]
        if strides:
            rate = 1
            for s in strides:
                rate *= int(s)
            return rate
    return int(expert.get_downsample_rates("hidden_states"))


class TeacherEnsemble(nn.Module):
    """Any number of frozen teachers run on the same waveforms; hidden states aligned in frames."""

    def __init__(
        self,
        specs: Sequence[Mapping],
        plan: Optional[TargetPlan] = None,
        speedups: Optional[TeacherSpeedups | Mapping] = None,
    ):
        super().__init__()
        # config block `teacher_speedups` (see teacher_speedups.py); None = its defaults
        self.speedups = speedups if isinstance(speedups, TeacherSpeedups) else TeacherSpeedups.from_config(speedups)
        if isinstance(specs, Mapping) or not specs:
            raise TeacherError("key `teachers` must be a non-empty list of teacher specs (name, upstream, ckpt, ...)")
        self.specs = [TeacherSpec.from_mapping(s, i) for i, s in enumerate(specs)]
        names = [s.name for s in self.specs]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise TeacherError(f"teacher name(s) {dup} appear more than once (key `name`): give each teacher its own name")
        self.teachers = nn.ModuleDict({s.name: Teacher(s) for s in self.specs})
        if self.speedups.compile:
            for teacher in self.teachers.values():
                compile_blocks(teacher.expert)
        self.names: List[str] = names
        self.dims: Dict[str, int] = {n: t.dim for n, t in self.teachers.items()}
        self.num_layers: Dict[str, int] = {n: t.num_layers for n, t in self.teachers.items()}
        self.downsample_rates: Dict[str, int] = {n: t.downsample_rate for n, t in self.teachers.items()}
        self.weights: Dict[str, float] = {s.name: s.weight for s in self.specs}
        self._check_frame_rates()
        for s in self.specs:
            for l in s.layers or ():
                self._check_layer(s.name, l, "its `layers`")
        self.plan: Optional[TargetPlan] = None
        # the first batch under autocast is checked against fp32: "stop" a run that fails, or "report" only
        self.autocast_check = "stop"
        self.autocast_agreement: Optional[AutocastAgreement] = None
        if plan is not None:
            self.set_plan(plan)

    # ----- checks ---------------------------------------------------------------------------
    def _check_frame_rates(self) -> None:
        rates = self.downsample_rates
        if len(set(rates.values())) <= 1:
            return
        first = self.names[0]
        odd = [n for n in self.names if rates[n] != rates[first]]
        raise TeacherError(
            f"teachers have different frame rates: {first!r} gives a frame every {rates[first]} samples "
            f"but {', '.join(f'{n!r} every {rates[n]}' for n in odd)}: their layers cannot be aligned "
            f"frame by frame; use teachers of one frame rate (drop or replace {', '.join(map(repr, odd))})"
        )

    def check_student_frame_rate(self, rate: int) -> None:
        """Raise :class:`TeacherError` unless a student giving a frame every ``rate`` samples matches the teachers."""
        theirs = self.downsample_rates[self.names[0]]
        if rate != theirs:
            raise TeacherError(
                f"the student gives a frame every {rate} samples (the product of the strides in "
                f"`student.extractor_conv_feature_layers`) but the teachers every {theirs}: their frames "
                f"cannot be paired; give the student conv strides whose product is {theirs}"
            )

    def _check_layer(self, name: str, layer: int, where: str) -> None:
        if layer > self.num_layers[name]:
            raise TeacherError(
                f"teacher {name!r} has {self.num_layers[name]} transformer layers (hidden states "
                f"0..{self.num_layers[name]}), but {where} asks for layer {layer}: choose layers "
                f"<= {self.num_layers[name]} (key `layers`) or a deeper teacher"
            )

    def check_plan(self, plan: TargetPlan) -> None:
        """Raise :class:`TeacherError` (a ``ValueError``) unless every plan source exists with the right dim."""
        for target in plan.targets:
            for name, layer in target.sources:
                if name not in self.teachers:
                    raise TeacherError(
                        f"target {target.name!r} uses teacher {name!r}, which is not among the teachers "
                        f"{self.names}: add it under `teachers` or fix the plan"
                    )
                self._check_layer(name, layer, f"target {target.name!r}")
            dims = {n: self.dims[n] for n, _ in target.sources}
            if target.op == "mean" and len(set(dims.values())) > 1:
                raise TeacherError(
                    f"target {target.name!r} averages teachers of different hidden sizes {dims}: "
                    "use scheme concat or multihead, or teachers of one size"
                )
            expected = sum(dims[n] for n, _ in target.sources) if target.op == "concat" else dims[target.sources[0][0]]
            if target.dim != expected:
                raise TeacherError(
                    f"target {target.name!r} says dim {target.dim}, but its teachers give {expected} "
                    f"({dims}): the plan was made for other teachers; build it again from these"
                )

    def set_plan(self, plan: TargetPlan) -> None:
        """Check ``plan`` and cut every teacher to the deepest layer it needs."""
        self.check_plan(plan)
        needed = plan.required_layers()
        for name, teacher in self.teachers.items():
            if name in needed and self.speedups.truncate_layers and teacher.truncate(needed[name]):
                logger.info("teacher %r: computing %d of %d layers", name, teacher.depth, teacher.num_layers)
        self.plan = plan

    # ----- running --------------------------------------------------------------------------
    def train(self, mode: bool = True) -> "TeacherEnsemble":
        """Teachers stay in eval mode whatever the parent module asks."""
        return super().train(False)

    def forward(
        self, wavs: List[torch.Tensor], layers: Optional[Mapping[str, Sequence[int]]] = None
    ) -> Dict[str, List[torch.Tensor] | Dict[int, torch.Tensor]]:
        """``hidden[teacher][layer]`` (B x T x D, fp32) for a list of unpadded waveforms, cropped to one T.

        ``layers`` (``TargetPlan.used_layers()``) keeps only those (``hidden[teacher]`` is then a
        dict layer -> tensor, and a teacher not named does not run): the others are freed as
        each teacher finishes, before the next one runs. ``self.speedups`` decides how: autocast
        (fp32, as the paper's recipe, unless on), inference mode or no_grad, each teacher in one
        call on the padded list or one call per distinct length. The first call under autocast
        is checked against fp32 (:mod:`s3prl_ekd.teachers.autocast_check`).
        """
        wavs = [w.float() for w in wavs]
        hidden = self._hidden(wavs, self.speedups, layers)
        if self.speedups.autocast_dtype(wavs[0].device) is not None:
            agreement = self.autocast_agreement or self.check_autocast(wavs, hidden, layers)
            if not agreement.passed and self.autocast_check != "report":
                raise agreement.error()  # again, should a caller have caught it and gone on
        flat = [h for hs in hidden.values() for h in (hs.values() if isinstance(hs, dict) else hs)]
        cropped = iter(align_frames(flat)[0])
        return {
            name: {l: next(cropped) for l in hs} if isinstance(hs, dict) else [next(cropped) for _ in hs]
            for name, hs in hidden.items()
        }

    def _hidden(
        self, wavs: List[torch.Tensor], sp: TeacherSpeedups, layers: Optional[Mapping[str, Sequence[int]]] = None
    ) -> Dict[str, List[torch.Tensor] | Dict[int, torch.Tensor]]:
        hidden: Dict[str, List[torch.Tensor] | Dict[int, torch.Tensor]] = {}
        for name, teacher in self.teachers.items():
            if layers is not None and name not in layers:
                continue
            with sp.context(wavs[0].device):
                hs = teacher(wavs) if sp.padded_batch else call_per_length(teacher, wavs)
                kept = dict(enumerate(hs)) if layers is None else {l: hs[l] for l in layers[name]}
                del hs  # the layers no target uses go now, not after every teacher ran
            # back to fp32 (the loss's dtype), and out of inference mode (the targets enter the
            # loss's autograd graph)
            kept = {l: h.to(torch.float32, copy=sp.inference_mode) for l, h in kept.items()}
            hidden[name] = list(kept.values()) if layers is None else kept
        return hidden

    def check_autocast(
        self, wavs: List[torch.Tensor], hidden: Mapping, layers: Optional[Mapping[str, Sequence[int]]] = None
    ) -> AutocastAgreement:
        """Compare ``hidden`` (computed under autocast, of ``layers``) with an fp32 pass over the
        same ``wavs``; record and print the agreement, and raise :class:`AutocastMismatchError`
        below the threshold unless ``self.autocast_check`` is ``"report"``."""
        sp = self.speedups
        device = wavs[0].device
        reference = self._hidden(wavs, replace(sp, autocast="off"), layers)
        compared = layers or (self.plan.used_layers() if self.plan is not None else {})
        numbers = compare_hidden(reference, hidden, compared, [len(w) for w in wavs], self.downsample_rates)
        dtype = str(sp.autocast_dtype(device)).replace("torch.", "")
        self.autocast_agreement = AutocastAgreement(dtype, str(device), sp.autocast_min_cosine, numbers)
        if not self.autocast_agreement.passed and self.autocast_check != "report":
            raise self.autocast_agreement.error()
        print(f"[TeacherEnsemble] - {self.autocast_agreement.summary()}")
        return self.autocast_agreement

    def describe(self) -> List[dict]:
        """The teachers as plain data (for the student checkpoint's ``Config.teachers``)."""
        return [
            {
                "name": s.name,
                "upstream": s.upstream,
                "ckpt": s.ckpt,
                "dim": self.dims[s.name],
                "num_layers": self.num_layers[s.name],
                "weight": s.weight,
            }
            for s in self.specs
        ]


def plan_from_config(
    scheme: str,
    ensemble: TeacherEnsemble,
    layers: Optional[Sequence[int] | Mapping[str, Sequence[int]]] = None,
    teacher_weights: Optional[Mapping[str, float]] = None,
) -> TargetPlan:
    """The target plan of ``scheme`` for these teachers, checked and set on the ensemble.

    ``layers`` defaults to each spec's ``layers`` (where all teachers give them), else the
    paper's 4, 8, 12; ``teacher_weights`` to each spec's ``weight``.
    """
    if layers is None and all(s.layers for s in ensemble.specs):
        layers = {s.name: list(s.layers) for s in ensemble.specs}
    elif layers is None and any(s.layers for s in ensemble.specs):
        missing = [s.name for s in ensemble.specs if not s.layers]
        raise TeacherError(
            f"some teachers give `layers` and others ({missing}) do not: give every teacher its `layers`, "
            "or one top-level `layers` list"
        )
    if teacher_weights is None:
        teacher_weights = dict(ensemble.weights)
    plan = TargetPlan.from_scheme(scheme, ensemble.dims, layers, teacher_weights)
    ensemble.set_plan(plan)
    return plan

