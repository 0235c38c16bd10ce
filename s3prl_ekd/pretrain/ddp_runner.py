"""A DistributedDataParallel twin of s3prl's pretraining Runner, for ``torchrun`` (GPUs and nodes).

s3prl 0.4.18's ``pretrain/runner.py`` is single-process (``--multi_gpu`` is DataParallel) and
writes logs and checkpoints unconditionally. This runner drives the same expert, config, flags
and checkpoint format with one process per device: the student is wrapped in DDP (NCCL on GPU,
gloo on CPU), each rank reads its share of the buckets (a ``DistributedSampler``), gradient
accumulation skips the all-reduce on all but the last micro-batch, and rank 0 alone writes
TensorBoard scalars (s3prl's names) and checkpoints (``checkpoint_rotation.save_numbered``:
atomic, read back, then s3prl's ``states-<step>.ckpt`` names and ``max_keep``). Its checkpoints
resume in s3prl's Runner and back, and load as ``-u ekd_student -k``. The effective batch is ``train_batch_size x world size x accumulation``.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections import defaultdict
from typing import Any, Dict

import torch
import torch.distributed as dist
from tensorboardX import SummaryWriter
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from s3prl_ekd.io.checkpoint import safe_load
from s3prl_ekd.pretrain.checkpoint_rotation import save_numbered
from s3prl_ekd.pretrain.ekd.config import check_runner_config
from s3prl_ekd.pretrain.ekd.pretrain_expert import UpstreamPretrainExpert
from s3prl_ekd.pretrain.step_guard import SkipNonFiniteSteps


def init_distributed() -> int:
    """Join the process group torchrun describes (NCCL with CUDA, else gloo); returns the rank."""
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        dist.init_process_group(backend=backend)
    return dist.get_rank()


class DDPRunner:
    """s3prl's ``Runner.train`` loop with DistributedDataParallel; same args, config and checkpoints."""

    def __init__(self, args, config: Dict[str, Any]):
        check_runner_config(config, getattr(args, "config", None) or "runner config")
        self.args = args
        self.config = config
        self.rank = dist.get_rank()
        self.world_size = dist.get_world_size()
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
        if torch.cuda.is_available() and str(args.device).startswith("cuda"):
            self.device = torch.device("cuda", local_rank)
        else:
            self.device = torch.device("cpu")
        self.logger = SummaryWriter(args.expdir) if self.rank == 0 else None
        self.init_ckpt = safe_load(args.init_ckpt) if args.init_ckpt else {}
        if self.init_ckpt.get("Upstream_Config"):
            args.upstream_config = self.init_ckpt["Upstream_Config"]

        self.upstream = UpstreamPretrainExpert(
            config["pretrain_expert"]["datarc"], args.upstream_config, str(self.device), multi_gpu=False
        ).to(self.device)
        self.upstream.set_gradient_accumulate_steps(config["runner"]["gradient_accumulate_steps"])
        if self.init_ckpt:
            if self.rank == 0:
                print("[DDPRunner] - Loading upstream weights from the previous experiment")
            self.upstream.load_model(self.init_ckpt)
        ids = [self.device.index] if self.device.type == "cuda" else None
        self.upstream.model = DistributedDataParallel(self.upstream.model, device_ids=ids)

    def close(self) -> None:
        """Flush the logs and leave the process group."""
        if self.logger is not None:
            self.logger.close()
        if dist.is_initialized():
            dist.destroy_process_group()

    def _optimizer_and_scheduler(self, total_steps: int):
        from s3prl.optimizers import get_optimizer
        from s3prl.schedulers import get_scheduler

        optimizer = get_optimizer([self.upstream.student], total_steps, self.config["optimizer"])
        scheduler = get_scheduler(optimizer, total_steps, self.config["scheduler"]) if self.config.get("scheduler") else None
        if self.init_ckpt:
            optimizer.load_state_dict(self.init_ckpt["Optimizer"])
            if scheduler is not None:
                scheduler.load_state_dict(self.init_ckpt["Scheduler"])
        return optimizer, scheduler

    def _save(self, optimizer, scheduler, global_step: int) -> None:
        states = {"Optimizer": optimizer.state_dict(), "Step": global_step, "Args": self.args, "Config": self.config}
        states = self.upstream.add_state_to_save(states)
        if scheduler is not None:
            states["Scheduler"] = scheduler.state_dict()
        # written atomically and read back before older ones are rotated out (max_keep, as s3prl)
        path = save_numbered(states, self.args.expdir, global_step, self.config["runner"]["max_keep"])
        tqdm.write(f"[DDPRunner] - Saved the checkpoint to: {path}")

    def _log(self, loss: float, optimizer, grad_norm: float, records, global_step: int) -> None:
        prefix = f"{self.args.upstream}/train-"
        self.logger.add_scalar(f"{prefix}loss", loss, global_step=global_step)
        self.logger.add_scalar(f"{prefix}lr", optimizer.get_lr()[0] if hasattr(optimizer, "get_lr") else self.config["optimizer"]["lr"], global_step=global_step)
        self.logger.add_scalar(f"{prefix}gradient-norm", grad_norm, global_step=global_step)
        if hasattr(optimizer, "skipped_steps"):  # steps refused for NaN/inf gradients (step_guard)
            self.logger.add_scalar(f"{prefix}skipped-steps", optimizer.skipped_steps, global_step=global_step)
        self.upstream.log_records(records=records, logger=self.logger, prefix=prefix, global_step=global_step)

    def train(self) -> None:
        """Train to ``runner.total_steps`` updates (or ``n_epochs``), as s3prl's Runner."""
        runner = self.config["runner"]
        accumulate = int(runner["gradient_accumulate_steps"])
        self.upstream.train()
        dataloader = self.upstream.get_train_dataloader()
        if runner["n_epochs"] > 0:
            total_steps = int(runner["n_epochs"] * len(dataloader) / accumulate)
        else:
            total_steps = int(runner["total_steps"])
        amp = bool(runner.get("fp16", False)) and self.device.type == "cuda"
        scaler = torch.amp.GradScaler("cuda") if amp else None
        optimizer, scheduler = self._optimizer_and_scheduler(total_steps)
        if self.rank == 0:
            print(f"[DDPRunner] - {self.world_size} processes; batch {self.config['pretrain_expert']['datarc']['train_batch_size']} "
                  f"x {self.world_size} x {accumulate} accumulation; {total_steps} steps")

        step = int(self.init_ckpt.get("Step") or 0)
        pbar = tqdm(total=total_steps, initial=step, dynamic_ncols=True, desc="overall", disable=self.rank != 0)
        records, micro, step_loss = defaultdict(list), 0, torch.zeros((), device=self.device)
        student = self.upstream.model
        # an optimizer with the step guard skips NaN/inf steps itself: the grad norm is then read
        # on the host only when logged, not every update
        guarded = isinstance(optimizer, SkipNonFiniteSteps)
        while step < total_steps:
            for data in dataloader:
                if step >= total_steps:
                    break
                global_step = step + 1
                micro += 1
                last_micro = micro % accumulate == 0
                # all-reduce the gradients once per update, not per micro-batch
                sync = contextlib.nullcontext() if last_micro else student.no_sync()
                with sync:
                    with torch.autocast(self.device.type, dtype=torch.float16, enabled=amp):
                        loss, records = self.upstream(data, records=records, global_step=global_step, log_step=runner["log_step"])
                    loss = loss / accumulate
                    (scaler.scale(loss) if amp else loss).backward()
                step_loss += loss.detach()  # summed on the device: read when logged
                if not last_micro:
                    continue

                if amp:
                    scaler.unscale_(optimizer)
                grad_norm = torch.nn.utils.clip_grad_norm_(self.upstream.student.parameters(), runner["gradient_clipping"])
                if amp:
                    scaler.step(optimizer)
                    scaler.update()
                elif not guarded and math.isnan(float(grad_norm)):
                    if self.rank == 0:
                        print(f"[DDPRunner] - Error : grad norm is NaN at global step {global_step}")
                else:
                    optimizer.step()
                self.upstream.on_before_zero_grad()
                optimizer.zero_grad()
                if scheduler is not None:
                    scheduler.step()

                last = global_step == total_steps
                if global_step % runner["log_step"] == 0 or last:
                    mean_loss = step_loss.clone()
                    dist.all_reduce(mean_loss)
                    if self.rank == 0:
                        self._log(float(mean_loss) / self.world_size, optimizer, float(grad_norm), records, global_step)
                    records = defaultdict(list)
                if (global_step % runner["save_step"] == 0 or last) and self.rank == 0:
                    self._save(optimizer, scheduler, global_step)
                step_loss = torch.zeros((), device=self.device)
                step = global_step
                pbar.update(1)
        pbar.close()
        dist.barrier()
