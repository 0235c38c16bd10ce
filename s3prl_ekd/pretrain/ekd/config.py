"""The pretraining configs: the upstream config (``-g``) and the runner config (``-c``), with their checks.

The split follows s3prl's ``pretrain/<name>/config_model.yaml`` and ``config_runner.yaml``:

* upstream config (``upstream_configs/ekd_*.yaml``): ``teachers``, ``targets``, ``student``,
  ``init_from``, ``loss``, ``task``, ``distortions``, ``teacher_speedups``, ``target_cache``;
  omitted keys take the paper's values (the speed-ups their own defaults, the cache off).
* runner config (``upstream_configs/pretrain_runner.yaml``): ``runner``, ``optimizer``,
  ``scheduler``, ``pretrain_expert.datarc`` (read by s3prl's Runner itself).

Unknown keys are errors naming the key, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import copy
import os
from typing import Any, Dict, Mapping, Optional

import yaml

from s3prl_ekd.config.values import ConfigValueError, check_known_keys, choice, integer, number
from s3prl_ekd.distill.student import StudentConfigError, make_student_config
from s3prl_ekd.distill.student_init import INIT_KEYS
from s3prl_ekd.teachers.target_cache import TargetCacheError, make_target_cache_config
from s3prl_ekd.distill.targets import SCHEMES
from s3prl_ekd.teachers.speedups import SpeedupConfigError, TeacherSpeedups
from s3prl_ekd.teachers.spec import TeacherError, TeacherSpec
from s3prl_ekd.pretrain.ekd.distortions import DistortionConfigError, make_distortion_config


class PretrainConfigError(ValueError):
    """A pretraining config with an unknown key or an unusable value."""


# DistilHuBERT's recipe (Chang et al. 2022), reused by the paper.
DEFAULT_UPSTREAM_CONFIG: Dict[str, Any] = {
    "teachers": None,  # required: list of {name, upstream, ckpt, layers, weight}
    # layers / teacher_weights None: each teacher spec's `layers` / `weight`, else 4, 8, 12 and equal (paper)
    "targets": {"scheme": "single", "layers": None, "teacher_weights": None},
    "student": {},  # s3prl distiller keys; omitted = DistilHuBERT (see student.py)
    "init_from": None,  # {teacher: NAME, conv, layers, allow_random}: see student_init.py (DistilHuBERT)
    "loss": {"l1_weight": 1.0, "cosine_weight": 1.0},  # lambda = 1 (paper)
    "task": {"sequence_length": 250000},  # crop at 15.6 s (DistilHuBERT)
    "distortions": {},  # off by default, see distortions.py
    "teacher_speedups": {},  # how the teachers run (autocast, truncation, ...): see teacher_speedups.py
    "target_cache": None,  # {path: DIR}: teacher targets cached on disk in fp16, see target_cache.py
}

DATARC_KEYS = {
    "num_workers": 0,
    "train_batch_size": 24,  # paper
    "max_timestep": 0,
    "libri_root": None,
    "file_path": None,
    "sets": ["train-clean-100", "train-clean-360", "train-other-500"],  # LibriSpeech 960 h (paper)
    "pin_memory": True,
    "bucketing": True,  # batches of similar lengths, as s3prl (false: random batches, more padding)
}
RUNNER_KEYS = {
    "n_epochs", "total_steps", "gradient_clipping", "gradient_accumulate_steps",
    "log_step", "save_step", "max_keep", "fp16",
}
# Keys a resumed run's config holds besides s3prl's: our student checkpoint format shares the
# ``Config`` entry of s3prl's runner checkpoints (see pretrain_expert.add_state_to_save).
RUNNER_CONFIG_KEYS = {"runner", "optimizer", "scheduler", "pretrain_expert"}
STUDENT_STATE_KEYS = {"student", "plan", "teachers"}


def read_yaml(path: str) -> Dict[str, Any]:
    """A YAML file holding a mapping."""
    if not os.path.isfile(path):
        raise PretrainConfigError(f"config file {path} does not exist")
    with open(path) as f:
        data = yaml.safe_load(f) or {}
    if not isinstance(data, Mapping):
        raise PretrainConfigError(f"config file {path} must hold a mapping of keys, got {type(data).__name__}")
    return dict(data)


def _merge_section(defaults: Mapping, given: Any, where: str) -> Dict[str, Any]:
    if given is None:
        return copy.deepcopy(dict(defaults))
    if not isinstance(given, Mapping):
        raise PretrainConfigError(f"{where} must be a mapping, got {given!r}")
    check_known_keys(given, defaults, error=PretrainConfigError, prefix=where)
    return {**copy.deepcopy(dict(defaults)), **dict(given)}


def make_upstream_config(source: str | Mapping, origin: Optional[str] = None) -> Dict[str, Any]:
    """The full upstream config from a YAML path or a dict (a resumed run's ``Upstream_Config``)."""
    where = origin or (source if isinstance(source, str) else "upstream config")
    given = read_yaml(source) if isinstance(source, str) else dict(source)
    check_known_keys(given, DEFAULT_UPSTREAM_CONFIG, where, PretrainConfigError)
    cfg: Dict[str, Any] = {}
    teachers = given.get("teachers")
    if not isinstance(teachers, list) or not teachers or not all(isinstance(t, Mapping) for t in teachers):
        raise PretrainConfigError(
            f"{where}: `teachers` must be a non-empty list of mappings like "
            "{name: hubert, upstream: hubert_base}"
        )
    names = [t.get("name") for t in teachers]
    if any(not n for n in names) or len(set(names)) != len(names):
        raise PretrainConfigError(f"{where}: every teacher needs a distinct `name`, got {names}")
    cfg["teachers"] = [dict(t) for t in teachers]
    for key in ("targets", "loss", "task"):
        cfg[key] = _merge_section(DEFAULT_UPSTREAM_CONFIG[key], given.get(key), f"{where}: {key}")
    try:
        check_upstream_values(cfg)
    except (ConfigValueError, TeacherError) as e:
        raise PretrainConfigError(f"{where}: {e}") from None
    try:
        cfg["student"] = make_student_config(given.get("student") or {})
        cfg["distortions"] = make_distortion_config(given.get("distortions") or {})
        cfg["teacher_speedups"] = TeacherSpeedups.from_config(given.get("teacher_speedups")).to_dict()
        cfg["target_cache"] = make_target_cache_config(given.get("target_cache"))
    except (StudentConfigError, DistortionConfigError, SpeedupConfigError, TargetCacheError) as e:
        raise PretrainConfigError(f"{where}: {e}") from None
    init = given.get("init_from")
    if init is not None:
        if not isinstance(init, Mapping) or init.get("teacher") not in names:
            raise PretrainConfigError(
                f"{where}: init_from must be a mapping whose `teacher` is one of the teachers {names}, got {init!r}"
            )
        check_known_keys(init, INIT_KEYS, where, PretrainConfigError, prefix="init_from")
        init = dict(init)
    cfg["init_from"] = init
    return cfg


def check_upstream_values(cfg: Mapping[str, Any]) -> None:
    """Teachers, targets, loss and task values in range, before anything is loaded or built."""
    specs = [TeacherSpec.from_mapping(t, i) for i, t in enumerate(cfg["teachers"])]
    names = [s.name for s in specs]
    targets = cfg["targets"]
    choice(targets["scheme"], "targets.scheme", SCHEMES)
    layers = targets["layers"]
    per_teacher = layers if isinstance(layers, Mapping) else {"": layers}
    for name, ls in per_teacher.items():
        key = f"targets.layers.{name}" if name else "targets.layers"
        if ls is not None and (not isinstance(ls, list) or not ls or not all(type(l) is int and l >= 0 for l in ls)):
            raise ConfigValueError(f"`{key}` must be a list of layer indices >= 0 (e.g. [4, 8, 12]), got {ls!r}")
        if name and name not in names:
            raise ConfigValueError(f"`{key}` names no teacher: the teachers are {names}")
    weights = targets["teacher_weights"]
    if weights is not None:
        if not isinstance(weights, Mapping):
            raise ConfigValueError(f"`targets.teacher_weights` must map teacher names {names} to weights > 0, got {weights!r}")
        for name, w in weights.items():
            if name not in names:
                raise ConfigValueError(f"`targets.teacher_weights.{name}` names no teacher: the teachers are {names}")
            number(w, f"targets.teacher_weights.{name}", 0.0, low_open=True)
    l1 = number(cfg["loss"]["l1_weight"], "loss.l1_weight")
    cos = number(cfg["loss"]["cosine_weight"], "loss.cosine_weight")
    if l1 == 0 and cos == 0:
        raise ConfigValueError("`loss.l1_weight` and `loss.cosine_weight` are both 0: nothing would be learned; give one > 0")
    integer(cfg["task"]["sequence_length"], "task.sequence_length", low=0, high=1 << 31)


def make_datarc(datarc: Mapping) -> Dict[str, Any]:
    """``pretrain_expert.datarc`` with defaults; unknown keys are errors."""
    cfg = _merge_section(DATARC_KEYS, datarc, "pretrain_expert.datarc")
    for key in ("libri_root", "file_path"):
        if not cfg[key]:
            raise PretrainConfigError(
                f"pretrain_expert.datarc.{key} is not set: give it in the runner config or with "
                f"-o \"config.pretrain_expert.datarc.{key}='PATH'\""
            )
    return cfg


def check_runner_config(config: Mapping, where: str = "runner config") -> None:
    """Raise on unknown keys of the runner config (s3prl's Runner would ignore them silently)."""
    check_known_keys(set(config) - STUDENT_STATE_KEYS, RUNNER_CONFIG_KEYS, where, PretrainConfigError, noun="top-level key(s)")
    runner = config.get("runner")
    if not isinstance(runner, Mapping):
        raise PretrainConfigError(f"{where}: the `runner` section is missing")
    check_known_keys(runner, RUNNER_KEYS, where, PretrainConfigError, prefix="runner")
    missing = sorted(RUNNER_KEYS - set(runner))
    if missing:
        raise PretrainConfigError(f"{where}: missing key(s) {', '.join('runner.' + k for k in missing)}")
    if not isinstance(config.get("optimizer"), Mapping) or "name" not in config["optimizer"]:
        raise PretrainConfigError(f"{where}: `optimizer` with a `name` is required")
    pe = config.get("pretrain_expert")
    if not isinstance(pe, Mapping) or set(pe) != {"datarc"}:
        raise PretrainConfigError(f"{where}: `pretrain_expert` must hold exactly one key, `datarc`")
    make_datarc(pe["datarc"])
