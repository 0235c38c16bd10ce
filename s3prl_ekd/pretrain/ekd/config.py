"""The pretraining configs: the upstream config (``-g``) and the runner config (``-c``), with their checks.

The split follows s3prl's ``pretrain/<name>/config_model.yaml`` and ``config_runner.yaml``:

* upstream config (``upstream_configs/ekd_*.yaml``): ``teachers``, ``targets``, ``student``,
  ``init_from``, ``loss``, ``task``, ``distortions``, ``teacher_speedups``, ``target_cache``;
  omitted keys take the paper's values (the speed-ups their own defaults, the cache off).
* runner config (``upstream_configs/pretrain_runner.yaml``): ``runner``, ``optimizer``,
  ``scheduler``, ``pretrain_expert.datarc`` (read by s3prl's Runner itself).

Each section is a dataclass read by :func:`s3prl_ekd.config.reader.from_mapping`: its fields
hold the defaults (the one place), unknown keys are errors naming the key, so a typo never
silently falls back to a default, and values are checked against their types and ranges.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Literal, Mapping, Optional, Union

import yaml

from s3prl_ekd.config.reader import from_mapping, setting, to_dict
from s3prl_ekd.config.values import ConfigValueError
from s3prl_ekd.distill.student import StudentConfig
from s3prl_ekd.distill.student_init import InitFrom, StudentInitError
from s3prl_ekd.distill.targets import SCHEMES
from s3prl_ekd.pretrain.ekd.distortions import DistortionConfig
from s3prl_ekd.teachers.spec import TeacherError, TeacherSpec
from s3prl_ekd.teachers.speedups import SpeedupConfigError, TeacherSpeedups
from s3prl_ekd.teachers.target_cache import TargetCacheConfig


class PretrainConfigError(ValueError):
    """A pretraining config with an unknown key or an unusable value."""


# DistilHuBERT's recipe (Chang et al. 2022), reused by the paper.
@dataclass(frozen=True)
class TargetsConfig:
    """What the student predicts: the scheme and the teacher layers."""

    scheme: Literal[SCHEMES] = "single"
    # None: each teacher spec's `layers`, else 4, 8, 12 (paper); a mapping gives them per teacher
    layers: Optional[Union[List[int], Dict[str, List[int]]]] = setting(None, low=0, nonempty=True)
    # None: each teacher spec's `weight`, else equal (paper)
    teacher_weights: Optional[Dict[str, float]] = setting(None, low=0.0, low_open=True)


@dataclass(frozen=True)
class LossConfig:
    """L1 + cosine (-log sigmoid) per target."""

    l1_weight: float = setting(1.0, low=0.0)  # lambda = 1 (paper)
    cosine_weight: float = setting(1.0, low=0.0)

    def __post_init__(self):
        if self.l1_weight == 0 and self.cosine_weight == 0:
            raise ConfigValueError("`loss.l1_weight` and `loss.cosine_weight` are both 0: nothing would be learned; give one > 0")


@dataclass(frozen=True)
class TaskConfig:
    """How utterances are cut."""

    sequence_length: int = setting(250000, low=0, high=1 << 31)  # crop at 15.6 s (DistilHuBERT)


@dataclass(frozen=True)
class UpstreamConfig:
    """The upstream config (``-g``): what is distilled. Omitted sections take the paper's values."""

    # required: a list of teacher specs {name, upstream, ckpt, layers, weight}, each read as a TeacherSpec
    # (here, so that its errors name the teacher rather than its index)
    teachers: Any
    targets: TargetsConfig = field(default_factory=TargetsConfig)
    student: StudentConfig = field(default_factory=StudentConfig)  # DistilHuBERT (see student.py)
    init_from: Optional[InitFrom] = None  # see student_init.py (DistilHuBERT starts from its teacher)
    loss: LossConfig = field(default_factory=LossConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    distortions: DistortionConfig = field(default_factory=DistortionConfig)  # off, see distortions.py
    teacher_speedups: TeacherSpeedups = field(default_factory=TeacherSpeedups)  # see teacher_speedups.py
    target_cache: Optional[TargetCacheConfig] = None  # {path: DIR}: teacher targets cached in fp16

    @staticmethod
    def prepare_mapping(cfg: Dict[str, Any]) -> Dict[str, Any]:
        """``target_cache: false`` is off, as null."""
        if cfg.get("target_cache") is False:
            cfg["target_cache"] = None
        return cfg

    def __post_init__(self):
        teachers = self.teachers
        if not isinstance(teachers, list) or not teachers or not all(isinstance(t, Mapping) for t in teachers):
            raise ConfigValueError(
                "`teachers` must be a non-empty list of mappings like {name: hubert, upstream: hubert_base}"
            )
        names = [t.get("name") for t in teachers]
        if any(not n for n in names) or len(set(names)) != len(names):
            raise ConfigValueError(f"every teacher needs a distinct `name`, got {names}")
        try:  # each spec read with its defaults; its errors name the teacher
            specs = [TeacherSpec.from_mapping(t, i) for i, t in enumerate(teachers)]
        except TeacherError as e:
            raise ConfigValueError(str(e)) from None
        object.__setattr__(self, "teachers", specs)
        layers, weights = self.targets.layers, self.targets.teacher_weights
        for group, key in ((layers, "targets.layers"), (weights, "targets.teacher_weights")):
            for name in group if isinstance(group, dict) else ():
                if name not in names:
                    raise ConfigValueError(f"`{key}.{name}` names no teacher: the teachers are {names}")
        if self.init_from is not None and self.init_from.teacher not in names:
            raise ConfigValueError(
                f"init_from must be a mapping whose `teacher` is one of the teachers {names}, got {self.init_from}"
            )


@dataclass(frozen=True)
class Datarc:
    """``pretrain_expert.datarc``: the data of a pretraining run."""

    num_workers: int = setting(0, low=0)
    train_batch_size: int = setting(24, low=1)  # paper
    max_timestep: int = setting(0, low=0)  # > 0 drops utterances at least this long (s3prl)
    libri_root: Optional[str] = None  # required for a run: the LibriSpeech folder
    file_path: Optional[str] = None  # required for a run: the tables of `s3prl-ekd prepare-lengths`
    sets: List[str] = setting(factory=lambda: ["train-clean-100", "train-clean-360", "train-other-500"], nonempty=True)  # 960 h (paper)
    pin_memory: bool = True
    bucketing: bool = True  # batches of similar lengths, as s3prl (false: random batches, more padding)


@dataclass(frozen=True)
class RunnerSection:
    """The ``runner`` section s3prl's Runner reads: every key is required (no defaults of ours)."""

    n_epochs: int
    total_steps: int
    gradient_clipping: float
    gradient_accumulate_steps: int = setting(low=1)
    log_step: int = setting(low=1)
    save_step: int = setting(low=1)
    max_keep: int = setting(low=0)
    fp16: bool = setting()


@dataclass(frozen=True)
class PretrainExpertSection:
    datarc: Datarc


@dataclass(frozen=True)
class RunnerConfig:
    """The runner config (``-c``), s3prl's config_runner.yaml layout; s3prl reads it as a dict."""

    runner: RunnerSection
    optimizer: Dict[str, Any]  # s3prl's get_optimizer: `name` and its arguments
    pretrain_expert: PretrainExpertSection
    scheduler: Optional[Dict[str, Any]] = None

    def __post_init__(self):
        if "name" not in self.optimizer:
            raise ConfigValueError("`optimizer` with a `name` is required")


# Keys a resumed run's config holds besides s3prl's: our student checkpoint format shares the
# ``Config`` entry of s3prl's runner checkpoints (see pretrain_expert.add_state_to_save).
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


def make_upstream_config(source: str | Mapping, origin: Optional[str] = None) -> Dict[str, Any]:
    """The full upstream config from a YAML path or a dict (a resumed run's ``Upstream_Config``),
    as the plain dict runs and checkpoints hold."""
    where = origin or (source if isinstance(source, str) else "upstream config")
    given = read_yaml(source) if isinstance(source, str) else dict(source)
    try:
        return to_dict(from_mapping(UpstreamConfig, given))
    except (ConfigValueError, SpeedupConfigError, StudentInitError) as e:
        raise PretrainConfigError(f"{where}: {e}") from None


def make_datarc(datarc: Mapping) -> Dict[str, Any]:
    """``pretrain_expert.datarc`` with defaults; unknown keys are errors."""
    cfg = to_dict(from_mapping(Datarc, {} if datarc is None else datarc, "pretrain_expert.datarc", PretrainConfigError))
    for key in ("libri_root", "file_path"):
        if not cfg[key]:
            raise PretrainConfigError(
                f"pretrain_expert.datarc.{key} is not set: give it in the runner config or with "
                f"-o \"config.pretrain_expert.datarc.{key}='PATH'\""
            )
    return cfg


def check_runner_config(config: Mapping, where: str = "runner config") -> None:
    """Raise on unknown keys of the runner config (s3prl's Runner would ignore them silently)."""
    try:
        from_mapping(RunnerConfig, {k: v for k, v in config.items() if k not in STUDENT_STATE_KEYS})
    except ConfigValueError as e:
        raise PretrainConfigError(f"{where}: {e}") from None
    make_datarc(config["pretrain_expert"]["datarc"])
