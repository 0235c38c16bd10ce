"""The student as a ``transformers`` ``HubertModel``, and back.

The student's body is HuBERT's: the conv extractor (group norm on the first layer, or layer norm on
every layer), a projection, the convolutional positional embedding, post-LN transformer layers.
``transformers`` calls the same weights by other names; :func:`key_pairs` lists both. Settings
that ``HubertConfig`` cannot express with equal features are refused by name
(:class:`HFFormatError`), never approximated; training-only settings that it does not carry are
listed by :func:`not_carried` (the model card prints them).

Features: ``transformers``' ``hidden_states[k]`` for k >= 1 is the student's transformer layer k.
Its ``hidden_states[0]`` is the encoder input *after* the positional convolution and layer norm;
the student's (s3prl's distiller's) is the projection output *before* them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, List, Mapping, Tuple

import torch

from s3prl_ekd.distill.student import EKDStudent, conv_layers, make_student_config
from s3prl_ekd.distill.student_checkpoint import load_student
from s3prl_ekd.distill.targets import TargetPlan
from s3prl_ekd.io.checkpoint import CheckpointError

# fairseq/s3prl activation name -> transformers ACT2FN name of the same function
ACTIVATIONS = {
    "gelu": "gelu",  # exact (erf) GELU in both
    "gelu_accurate": "gelu_new",  # tanh approximation, same constants
    "gelu_fast": "gelu_new",  # s3prl maps gelu_fast to gelu_accurate
    "relu": "relu",
    "tanh": "tanh",
    "linear": "linear",
}
HF_ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_accurate", "relu": "relu", "tanh": "tanh", "linear": "linear"}
EXTRACTOR_MODES = {"default": "group", "layer_norm": "layer"}  # s3prl extractor_mode -> feat_extract_norm
LAYER_NORM_EPS = 1e-5  # torch's LayerNorm default, which s3prl's distiller modules use
# the student's options that HubertConfig has no field for: what each does, and why the features are equal
TRAINING_ONLY = {
    "feature_grad_mult": "scales the conv extractor's gradient during pretraining; no effect on features",
    "extractor_dropout": "dropout inside the conv extractor, active only in training",
    "exact_padding": (
        "s3prl-ekd runs the conv extractor on each utterance of a padded batch alone; transformers "
        "has no such switch (see the card's 'Batches of unequal lengths')"
    ),
    "out_layer_inter_dim": "size of the prediction heads, which are not exported",
}


class HFFormatError(ValueError):
    """A student (or a transformers checkpoint) that the other format cannot express exactly."""


# ----- config ---------------------------------------------------------------------------------
def _refuse(option: str, value: Any, why: str) -> HFFormatError:
    return HFFormatError(
        f"student config option {option}={value!r} has no transformers HubertConfig equivalent ({why}): "
        "export-hf refuses rather than approximate; use export-submission or export-s3prl for this student"
    )


def hubert_config(student_config: Mapping) -> "transformers.HubertConfig":
    """The ``HubertConfig`` of a student config; :class:`HFFormatError` names an option it cannot express."""
    from transformers import HubertConfig

    cfg = make_student_config(student_config)
    if cfg["extractor_mode"] not in EXTRACTOR_MODES:
        raise _refuse("extractor_mode", cfg["extractor_mode"], f"feat_extract_norm knows {sorted(EXTRACTOR_MODES)}")
    if cfg["layer_norm_first"]:
        raise _refuse(
            "layer_norm_first", True,
            "transformers' pre-LN HuBERT (do_stable_layer_norm) puts a final layer norm into its last "
            "hidden state, which s3prl's distiller does not: the layer features would differ",
        )
    if cfg["attention_type"] != "original":
        raise _refuse("attention_type", cfg["attention_type"], "HubertAttention is the original full attention")
    if cfg["activation_fn"] not in ACTIVATIONS:
        raise _refuse("activation_fn", cfg["activation_fn"], f"the ones with an equal hidden_act are {sorted(ACTIVATIONS)}")
    layers = conv_layers(cfg)
    return HubertConfig(
        hidden_size=cfg["encoder_embed_dim"],
        num_hidden_layers=cfg["encoder_layers"],
        num_attention_heads=cfg["encoder_attention_heads"],
        intermediate_size=cfg["encoder_ffn_embed_dim"],
        hidden_act=ACTIVATIONS[cfg["activation_fn"]],
        hidden_dropout=cfg["dropout"],
        attention_dropout=cfg["attention_dropout"],
        activation_dropout=cfg["activation_dropout"],
        layerdrop=cfg["encoder_layerdrop"],
        feat_proj_dropout=0.0,  # the distiller has no dropout after the projection
        feat_proj_layer_norm=False,  # nor a layer norm before it (HuBERT Base has one)
        layer_norm_eps=LAYER_NORM_EPS,
        feat_extract_norm=EXTRACTOR_MODES[cfg["extractor_mode"]],
        feat_extract_activation="gelu",
        conv_dim=[c for c, _, _ in layers],
        conv_kernel=[k for _, k, _ in layers],
        conv_stride=[s for _, _, s in layers],
        conv_bias=False,
        num_conv_pos_embeddings=cfg["conv_pos"],
        num_conv_pos_embedding_groups=cfg["conv_pos_groups"],
        conv_pos_batch_norm=False,
        do_stable_layer_norm=False,
        # the student was distilled without masked frames; no masked_spec_embed to ship
        apply_spec_augment=False,
        mask_time_prob=0.0,
        mask_feature_prob=0.0,
        architectures=["HubertModel"],
    )


def not_carried(student_config: Mapping) -> Dict[str, str]:
    """Student options whose value ``HubertConfig`` does not hold: option=value -> why features are equal."""
    cfg = make_student_config(student_config)
    return {f"{k}={cfg[k]!r}": why for k, why in TRAINING_ONLY.items()}


def student_config_from_hubert(hf: Any, source: str = "config.json") -> Dict[str, object]:
    """The student config of a ``HubertConfig``; :class:`HFFormatError` names a field the student cannot express."""

    def refuse(field: str, why: str) -> HFFormatError:
        return HFFormatError(
            f"{source}: {field}={getattr(hf, field, None)!r} cannot be expressed by the DistilHuBERT-style "
            f"student ({why}); only HuBERT checkpoints shaped like DistilHuBERT load as ekd_student "
            "(use -u hubert_local or transformers itself for this one)"
        )

    if getattr(hf, "model_type", None) != "hubert":
        raise refuse("model_type", "only transformers' HuBERT is read")
    checks = [
        ("feat_extract_norm", hf.feat_extract_norm in EXTRACTOR_MODES.values(), "group or layer"),
        ("feat_extract_activation", hf.feat_extract_activation == "gelu", "s3prl's conv extractor uses GELU"),
        ("conv_bias", not hf.conv_bias, "the student's conv layers have no bias"),
        ("feat_proj_layer_norm", not hf.feat_proj_layer_norm, "the student has no layer norm before its projection"),
        ("conv_pos_batch_norm", not getattr(hf, "conv_pos_batch_norm", False), "the student's positional conv is weight-normed"),
        ("do_stable_layer_norm", not hf.do_stable_layer_norm, "the student is post-LN"),
        ("hidden_act", hf.hidden_act in HF_ACTIVATIONS, f"known: {sorted(HF_ACTIVATIONS)}"),
        ("layer_norm_eps", float(hf.layer_norm_eps) == LAYER_NORM_EPS, f"s3prl's layer norms use {LAYER_NORM_EPS}"),
    ]
    for field, ok, why in checks:
        if not ok:
            raise refuse(field, why)
    mode = {v: k for k, v in EXTRACTOR_MODES.items()}[hf.feat_extract_norm]
    layers = [(int(c), int(k), int(s)) for c, k, s in zip(hf.conv_dim, hf.conv_kernel, hf.conv_stride)]
    return make_student_config(
        {
            "extractor_mode": mode,
            "extractor_conv_feature_layers": repr(layers),
            "conv_pos": int(hf.num_conv_pos_embeddings),
            "conv_pos_groups": int(hf.num_conv_pos_embedding_groups),
            "encoder_layers": int(hf.num_hidden_layers),
            "encoder_embed_dim": int(hf.hidden_size),
            "encoder_ffn_embed_dim": int(hf.intermediate_size),
            "encoder_attention_heads": int(hf.num_attention_heads),
            "activation_fn": HF_ACTIVATIONS[hf.hidden_act],
            "dropout": float(hf.hidden_dropout),
            "attention_dropout": float(hf.attention_dropout),
            "activation_dropout": float(hf.activation_dropout),
            "encoder_layerdrop": float(hf.layerdrop),
        }
    )


# ----- weights --------------------------------------------------------------------------------
def key_pairs(student_config: Mapping) -> List[Tuple[str, str]]:
    """(student key, transformers key) for every body weight; the projection is listed only when the student has one."""
    cfg = make_student_config(student_config)
    layers = conv_layers(cfg)
    pairs = []
    for i in range(len(layers)):
        pairs.append((f"feature_extractor.conv_layers.{i}.0.weight", f"feature_extractor.conv_layers.{i}.conv.weight"))
        norm = {"default": "2" if i == 0 else None, "layer_norm": "2.1"}[cfg["extractor_mode"]]
        if norm is not None:
            for p in ("weight", "bias"):
                pairs.append((f"feature_extractor.conv_layers.{i}.{norm}.{p}", f"feature_extractor.conv_layers.{i}.layer_norm.{p}"))
    if layers[-1][0] != cfg["encoder_embed_dim"]:
        pairs += [(f"post_extract_proj.{p}", f"feature_projection.projection.{p}") for p in ("weight", "bias")]
    pos = "encoder.pos_conv_embed.conv"
    pairs += [
        ("encoder.pos_conv.0.bias", f"{pos}.bias"),
        ("encoder.pos_conv.0.weight_g", f"{pos}.parametrizations.weight.original0"),
        ("encoder.pos_conv.0.weight_v", f"{pos}.parametrizations.weight.original1"),
        ("encoder.layer_norm.weight", "encoder.layer_norm.weight"),
        ("encoder.layer_norm.bias", "encoder.layer_norm.bias"),
    ]
    block = {
        "self_attn.k_proj": "attention.k_proj",
        "self_attn.v_proj": "attention.v_proj",
        "self_attn.q_proj": "attention.q_proj",
        "self_attn.out_proj": "attention.out_proj",
        "self_attn_layer_norm": "layer_norm",
        "fc1": "feed_forward.intermediate_dense",
        "fc2": "feed_forward.output_dense",
        "final_layer_norm": "final_layer_norm",
    }
    for i in range(cfg["encoder_layers"]):
        for ours, theirs in block.items():
            for p in ("weight", "bias"):
                pairs.append((f"encoder.layers.{i}.{ours}.{p}", f"encoder.layers.{i}.{theirs}.{p}"))
    return pairs


def to_hubert_model(student: EKDStudent) -> "transformers.HubertModel":
    """The student's body as a ``transformers`` ``HubertModel`` (eval mode, heads dropped)."""
    from transformers import HubertModel

    config = hubert_config(student.config)
    ours = student.state_dict()
    weights = {hf: ours[s].detach().cpu().clone() for s, hf in key_pairs(student.config)}
    if student.post_extract_proj is None:
        # HubertModel always projects: the identity keeps the features exactly (x @ I + 0 == x)
        dim = config.hidden_size
        weights["feature_projection.projection.weight"] = torch.eye(dim)
        weights["feature_projection.projection.bias"] = torch.zeros(dim)
    model = HubertModel(config)
    model.load_state_dict(weights, strict=True)
    return model.eval()


def student_from_hubert_model(model: Any, source: str = "<model>") -> EKDStudent:
    """An :class:`EKDStudent` (no heads, ``exact_padding`` on) with the weights of a ``HubertModel``."""
    config = student_config_from_hubert(model.config, f"{source}/config.json")
    theirs = {k: v for k, v in model.state_dict().items() if k != "masked_spec_embed"}
    pairs = key_pairs(config)
    expected = {hf for _, hf in pairs} | {"feature_projection.projection.weight", "feature_projection.projection.bias"}
    extra = sorted(set(theirs) - expected)
    if extra:
        raise HFFormatError(f"{source}: weights the student has no place for: {extra[:5]}: not a plain HubertModel body")
    weights = {s: theirs[hf] for s, hf in pairs}
    if "post_extract_proj.weight" not in weights:
        w, b = theirs["feature_projection.projection.weight"], theirs["feature_projection.projection.bias"]
        if not (torch.equal(w, torch.eye(w.shape[0], dtype=w.dtype)) and not b.any()):
            raise HFFormatError(
                f"{source}: conv_dim[-1] equals hidden_size, so the student has no projection, but this "
                "checkpoint's feature_projection is not the identity: it cannot be expressed"
            )
    student = EKDStudent(config, TargetPlan([], scheme="none"))
    student.load_state_dict(weights, strict=True)
    return student.eval()


# ----- folders ----------------------------------------------------------------------------------
def is_hf_folder(path: os.PathLike | str) -> bool:
    """Whether ``path`` is a folder holding a transformers ``config.json``."""
    return Path(path).is_dir() and (Path(path) / "config.json").is_file()


def load_hf_student(folder: os.PathLike | str) -> EKDStudent:
    """The student from a ``transformers`` HuBERT folder (``export-hf``'s, or any DistilHuBERT-shaped one)."""
    from transformers import HubertConfig, HubertModel

    folder = Path(folder)
    try:
        model_type = json.loads((folder / "config.json").read_text()).get("model_type")
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{folder}/config.json cannot be read as JSON ({e}): the folder is damaged") from None
    if model_type != "hubert":
        raise HFFormatError(
            f"{folder}/config.json: model_type={model_type!r}; only transformers HuBERT folders "
            "(model_type 'hubert') load as ekd_student"
        )
    student_config_from_hubert(HubertConfig.from_pretrained(folder, local_files_only=True), f"{folder}/config.json")
    try:
        # weights_only: a pytorch_model.bin is read without unpickling code (safetensors needs nothing)
        model, info = HubertModel.from_pretrained(
            folder, local_files_only=True, weights_only=True, output_loading_info=True
        )
    except MemoryError:
        raise
    except Exception as e:  # a missing file is an OSError, a cut safetensors file a SafetensorError
        raise CheckpointError(
            f"{folder}: transformers cannot load its weights ({type(e).__name__}: {str(e).splitlines()[0]}): "
            "the folder is incomplete or damaged; export or download it again"
        ) from None
    missing = [k for k in info["missing_keys"] if k != "masked_spec_embed"]
    if missing or info["mismatched_keys"]:
        raise CheckpointError(
            f"{folder}: the weight file lacks or misshapes {sorted(missing or info['mismatched_keys'])[:5]}: "
            "transformers would fill them with random values; the folder is incomplete"
        )
    return student_from_hubert_model(model, str(folder))


def load_any_student(path: os.PathLike | str) -> Tuple[EKDStudent, Dict[str, Any]]:
    """A student checkpoint file, or a transformers HuBERT folder: (student, checkpoint dict or ``{}``)."""
    if Path(path).is_dir():
        if not is_hf_folder(path):
            raise CheckpointError(
                f"{path} is a folder without config.json: pass a student .ckpt file, or a transformers "
                "HuBERT folder (config.json + model.safetensors, as export-hf writes)"
            )
        return load_hf_student(path), {}
    return load_student(path)
