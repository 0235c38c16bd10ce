"""The pretrain expert of s3prl's Runner (``-u ekd``): ensemble distillation into the student.

One step: the frozen teachers hear the clean batch; the targets are built from their hidden
states by the target plan; the student hears the same batch (or a distorted copy) and its heads
predict the targets; :class:`~s3prl_ekd.distill.loss.DistillLoss` compares them over the student's valid
frames. ``distill_step`` is that step in one function, to benchmark or swap. With the
upstream config's ``target_cache`` on, the targets of utterances seen before are read from disk
instead (:mod:`s3prl_ekd.teachers.target_cache`); a batch of such utterances runs no teacher.

The interface is the one s3prl's ``pretrain/runner.py`` calls: ``__init__(datarc,
upstream_config, device, multi_gpu)``, ``model`` (the trained module: the student only),
``forward(data, records, global_step, log_step) -> (loss, records)``, ``get_train_dataloader``,
``load_model``, ``add_state_to_save``, ``on_before_zero_grad``, ``log_records``.
"""

from __future__ import annotations

import contextlib
import random
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Mapping, Optional, Tuple

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import DataLoader

from s3prl_ekd.distill.loss import DistillLoss
from s3prl_ekd.distill.masked_conv import valid_mask
from s3prl_ekd.distill.student import EKDStudent
from s3prl_ekd.distill.student_checkpoint import check_student_state, student_state
from s3prl_ekd.distill.student_init import init_student_from_config
from s3prl_ekd.pretrain.ekd.config import make_datarc, make_upstream_config
from s3prl_ekd.pretrain.ekd.dataset import WaveBatch, make_train_loader
from s3prl_ekd.pretrain.ekd.distortions import Distorter
from s3prl_ekd.teachers.ensemble import TeacherEnsemble, plan_from_config
from s3prl_ekd.teachers.target_cache import TargetCache


@dataclass
class DistillOutput:
    """What one distillation step computed."""

    loss: torch.Tensor
    records: Dict[str, torch.Tensor]
    predictions: List[torch.Tensor]  # one B x T x D per plan target, cropped to the common T
    targets: List[torch.Tensor]
    frame_mask: torch.Tensor  # B x T, True on the student's valid frames


def _rank_and_world() -> Tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class UpstreamPretrainExpert(nn.Module):
    """Teachers -> targets, student -> predictions, DistillLoss; the s3prl pretrain expert interface."""

    def __init__(self, datarc: Mapping, upstream_config: str | Mapping, device: str = "cuda", multi_gpu: bool = False, **kwargs):
        super().__init__()
        if multi_gpu:
            raise ValueError(
                "--multi_gpu (DataParallel) is not supported by the ekd expert: train on several GPUs with "
                "`torchrun --nproc_per_node N run/run_pretrain.py ...` (DistributedDataParallel)"
            )
        self.datarc = make_datarc(datarc)
        self.upstream_config = make_upstream_config(upstream_config)
        self.device = device
        self.multi_gpu = False
        # run_pretrain seeds torch with --seed before building the expert: data order, crops,
        # dropout and distortions derive from it and the step, never from the global RNG history
        self.seed = int(torch.initial_seed()) % (2**31)
        cfg = self.upstream_config

        self.teachers = TeacherEnsemble(cfg["teachers"], speedups=cfg["teacher_speedups"])
        targets = cfg["targets"]
        self.plan = plan_from_config(
            targets["scheme"], self.teachers, layers=targets["layers"], teacher_weights=targets["teacher_weights"]
        )
        student = EKDStudent(cfg["student"], self.plan)
        self.teachers.check_student_frame_rate(student.downsample_rate)
        copied = init_student_from_config(student, self.teachers, cfg["init_from"])
        if copied:
            print(f"[UpstreamPretrainExpert] - Initialised {len(copied)} student tensors from teacher {cfg['init_from']['teacher']}")
        self.model = student  # what s3prl's Runner optimises and clips: the student only
        self.loss = DistillLoss(self.plan, **cfg["loss"])
        self.distorter = Distorter(cfg["distortions"]) if cfg["distortions"]["enabled"] else None
        self.target_cache = TargetCache.from_config(cfg["target_cache"], self.teachers, self.plan, device)
        if self.target_cache is not None:
            print(f"[UpstreamPretrainExpert] - Teacher targets cached (fp16) in {self.target_cache.folder}")
        # files the loader skipped or repaired since this run started (its workers count them;
        # each batch brings its share), logged as audio/<count> TensorBoard scalars
        self.audio_counts: Counter = Counter()
        self._autocast_logged = False
        self._resume_step = 0
        self._gradient_accumulate_steps = 1
        self._step_seen = (-1, 0)  # (global step, micro-batches seen in it)
        self.global_step = 0
        print(
            f"[UpstreamPretrainExpert] - Plan {self.plan.scheme}: {', '.join(self.plan.names)}; student "
            f"{student.num_parameters() / 1e6:.2f} M parameters without heads, "
            f"{student.num_parameters(with_heads=True) / 1e6:.2f} M with"
        )

    # ----- pieces ---------------------------------------------------------------------------
    @property
    def student(self) -> EKDStudent:
        """The student, unwrapped from DistributedDataParallel if the DDP runner wrapped it."""
        m = self.model
        return m.module if isinstance(m, (nn.parallel.DistributedDataParallel, nn.DataParallel)) else m

    def train(self, mode: bool = True) -> "UpstreamPretrainExpert":
        """Train the student; the teachers stay in eval mode (no dropout), as frozen targets."""
        super().train(mode)
        self.teachers.eval()
        return self

    # ----- the training step ------------------------------------------------------------------
    def _plan_targets(self, wavs: List[torch.Tensor]) -> List[torch.Tensor]:
        """The plan's targets (B x T x D each) from the teachers' hidden states of ``wavs``."""
        with torch.no_grad():
            return self.plan.build(self.teachers(wavs, layers=self.plan.used_layers()))

    def teacher_targets(self, batch: WaveBatch) -> List[torch.Tensor]:
        """The plan's targets of a batch's clean waveforms (B x T x D each, on the device): from
        the teachers, or with the target cache on, from disk where it holds them (and stored
        there where it did not)."""
        wavs = batch.wavs.to(self.device, non_blocking=True)
        return self._targets_of([w[:n] for w, n in zip(wavs, batch.lengths.tolist())], batch.keys, batch.cached)

    def _targets_of(self, clean: List[torch.Tensor], keys, prefetched=None) -> List[torch.Tensor]:
        if self.target_cache is None:
            return self._plan_targets(clean)
        if keys is None:
            raise ValueError(
                "target_cache is on but the batch does not say which utterances it holds (WaveBatch.keys is None): "
                "feed batches from the pretraining loader (get_train_dataloader), or switch target_cache off"
            )
        return self.target_cache.batch_targets(keys, clean, self._plan_targets, self.device, prefetched=prefetched)

    def distill_step(self, batch: WaveBatch, generator: Optional[torch.Generator] = None) -> DistillOutput:
        """Teachers on the clean batch (or the target cache), targets by the plan, student on the
        (distorted) batch, loss."""
        wavs = batch.wavs.to(self.device, non_blocking=True)
        lengths = batch.lengths.cpu()  # read on the host: no wait on the device
        clean = [w[:n] for w, n in zip(wavs, lengths.tolist())]
        hits_before = self.target_cache.counts["hits"] if self.target_cache is not None else 0
        full_targets = self._targets_of(clean, batch.keys, batch.cached)

        student_wavs = wavs
        if self.distorter is not None:
            student_wavs = pad_sequence(self.distorter(clean, generator or torch.Generator()), batch_first=True)
        out = self.model(student_wavs, lengths)

        # teachers may give a frame fewer than the student (s3prl #331): crop all to the shortest
        frames = min(out.predictions[0].shape[1], full_targets[0].shape[1])
        targets = [t[:, :frames] for t in full_targets]
        predictions = [p[:, :frames] for p in out.predictions]
        mask = valid_mask(out.frame_lengths.clamp(max=frames), frames)
        loss, records = self.loss(predictions, targets, mask)
        if self.target_cache is not None:
            # the share of this batch's utterances read from the cache (logged as ekd/train-target_cache/hit_rate)
            hits = self.target_cache.counts["hits"] - hits_before
            records["target_cache/hit_rate"] = torch.tensor(hits / len(clean), device=loss.device)
        return DistillOutput(loss, records, predictions, targets, mask)

    @contextlib.contextmanager
    def step_random_state(self, global_step: int) -> Iterator[torch.Generator]:
        """Seed dropout and distortions from (seed, rank, step, micro-batch) alone, so a resumed
        run draws exactly what the uninterrupted run drew; the global RNG is restored after."""
        last_step, micro = self._step_seen
        micro = micro + 1 if global_step == last_step else 0
        self._step_seen = (global_step, micro)
        rank, _ = _rank_and_world()
        seed = random.Random(f"{self.seed}/{rank}/{global_step}/{micro}").getrandbits(62)
        devices = [torch.device(self.device)] if torch.device(self.device).type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            yield torch.Generator().manual_seed(seed)

    # ----- s3prl's interface ------------------------------------------------------------------
    def forward(self, data: WaveBatch, records: Optional[Dict[str, list]] = None, global_step: int = 0, log_step: int = 1000, **kwargs) -> Tuple[torch.Tensor, Dict[str, list]]:
        """One (micro-)batch: returns the loss and appends this step's per-target records."""
        records = records if records is not None else defaultdict(list)
        self.global_step = global_step
        self.audio_counts.update(getattr(data, "audio_counts", None) or {})
        with self.step_random_state(global_step) as generator:
            out = self.distill_step(data, generator)
        for key, value in out.records.items():
            records[key].append(value)
        return out.loss, records

    def get_train_dataloader(self) -> DataLoader:
        """Bucketed LibriSpeech; one bucket per batch; positioned after the resumed step's batches."""
        rank, world = _rank_and_world()
        return make_train_loader(
            self.datarc,
            self.upstream_config["task"]["sequence_length"],
            seed=self.seed,
            device=self.device,
            rank=rank,
            world=world,
            batches_done=self._resume_step * self._gradient_accumulate_steps,
            target_cache=self.target_cache,
        )

    def load_model(self, all_states: Mapping[str, Any]) -> None:
        """Resume: the student's weights and the data position of a runner checkpoint."""
        check_student_state(all_states, "the resumed checkpoint")
        self.student.load_state_dict(all_states["Student"])
        self._resume_step = int(all_states.get("Step") or 0)
        runner = (all_states.get("Config") or {}).get("runner") or {}
        self._gradient_accumulate_steps = int(runner.get("gradient_accumulate_steps", 1))

    def set_gradient_accumulate_steps(self, steps: int) -> None:
        """Batches per update, to position the data on resume (the runner config knows it)."""
        self._gradient_accumulate_steps = int(steps)

    def add_state_to_save(self, all_states: Dict[str, Any]) -> Dict[str, Any]:
        """Add the student checkpoint (``-u ekd_student -k`` loads it) to the runner's state."""
        # s3prl's Runner stores pbar.n, one less than the updates done, so its resume would repeat a
        # step; store the updates done (the step in the file name) instead
        all_states["Step"] = int(self.global_step)
        state = student_state(self.student, step=self.global_step, teachers=self.teachers.describe())
        config = dict(all_states.get("Config") or {})
        config.update(state.pop("Config"))  # the runner config and the student's share `Config`
        all_states.update(state)
        all_states["Config"] = config
        all_states["Upstream_Config"] = self.upstream_config
        return all_states

    def on_before_zero_grad(self) -> None:
        """Nothing to do before the gradients are cleared."""

    def log_records(self, records: Mapping[str, list], logger, prefix: str, global_step: int, **kwargs) -> None:
        """Each target's l1 / cos / loss, averaged since the last log, as ``{prefix}{target}/{term}``."""
        for key, values in records.items():
            if values:
                logger.add_scalar(f"{prefix}{key}", float(torch.stack(list(values)).float().mean()), global_step=global_step)
        agreement = self.teachers.autocast_agreement
        if agreement is not None and not self._autocast_logged:  # measured once, on the first batch
            for name, numbers in agreement.teachers.items():
                for key, value in numbers.items():
                    logger.add_scalar(f"teacher_autocast/{name}/{key}", value, global_step=global_step)
            self._autocast_logged = True
        # running totals of this process's loader (rank 0's in DDP), not per-step means
        for key, value in sorted(self.audio_counts.items()):
            logger.add_scalar(f"audio/{key}", value, global_step=global_step)
