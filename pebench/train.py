"""The training loop. It owns all optimisation state (model, optimiser, scheduler, gradient
scaler, step), the precision and the data-parallel wrapper."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from pebench.distributed import SINGLE, Ranks, sum_across
from pebench.errors import PebenchError
from pebench.model import MultiTaskModel
from pebench.precision import autocast, grad_scaler
from pebench.schedule import adamw, warmup_cosine
from pebench.task import Task

Batch = dict[str, torch.Tensor]


@dataclass(frozen=True)
class OptimConfig:
    lr: float
    weight_decay: float
    warmup_fraction: float
    clip_grad_norm: float
    decoder_lr: float | None = None  # None: lr


class Trainer:
    """Optimisation of a MultiTaskModel: precision (autocast, and a gradient scaler for fp16),
    optional torch.compile of the forward pass, and DistributedDataParallel when the run has
    several ranks (each trains its share of the global batch; gradients are averaged)."""

    def __init__(self, model: MultiTaskModel, tasks: dict[str, Task], total_steps: int,
                 optim: OptimConfig, device: torch.device, precision: str = "fp32",
                 compile_model: bool = False, ranks: Ranks = SINGLE) -> None:
        self.model = model
        self.tasks = tasks
        self.device = device
        self.precision = precision
        self.ranks = ranks
        self.total_steps = total_steps
        self.clip_grad_norm = optim.clip_grad_norm
        self.optimizer = adamw(model, optim.lr, optim.weight_decay, fused=True,
                               rates={model.decoders: optim.decoder_lr or optim.lr})
        warmup = round(optim.warmup_fraction * total_steps)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, warmup_cosine(total_steps, warmup))
        self.scaler = grad_scaler(precision, device)
        self.parameter_sets = model.parameter_sets()
        self.network: nn.Module = model
        if ranks.distributed:
            if device.type == "cuda":
                # Batch statistics over the global batch, as one process computes them (in
                # place: the same parameters and buffers). gloo on a CPU has no SyncBatchNorm,
                # so there each rank normalises over its share.
                nn.SyncBatchNorm.convert_sync_batchnorm(model)
            # The hypernetworks run in prepare(), outside forward(); their parameters still
            # get their gradients averaged, as DDP's hooks sit on every parameter.
            self.network = DistributedDataParallel(
                model, device_ids=[device.index] if device.type == "cuda" else None)
        if compile_model:
            self.network = torch.compile(self.network)
        self.step = 0

    def state_dict(self) -> dict[str, object]:
        """Optimiser, schedule, gradient scaler and step: with the model's tensors, all a
        resume needs."""
        return {"step": self.step, "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict()}

    def load_state_dict(self, state: dict[str, object]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])  # type: ignore[arg-type]
        self.scheduler.load_state_dict(state["scheduler"])  # type: ignore[arg-type]
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])  # type: ignore[arg-type]
        self.step = int(state["step"])  # type: ignore[call-overload]

    def forward_losses(self, batch: Batch) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """The task losses (float32) and their weighted total, under the run's precision."""
        with autocast(self.precision, self.device):
            self.model.prepare()
            outputs = self.network(batch["image"])
            losses = {name: task.loss(outputs[name], batch[name])
                      for name, task in self.tasks.items()}
        total = sum(task.loss_weight * losses[name] for name, task in self.tasks.items())
        return losses, total  # type: ignore[return-value]

    def train_step(self, batch: Batch) -> dict[str, float]:
        """One optimisation step; returns the unweighted task losses and the weighted total
        (over the global batch when several ranks train)."""
        self.model.train()
        batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
        losses, total = self.forward_losses(batch)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        self.scaler.unscale_(self.optimizer)
        for params in self.parameter_sets:
            nn.utils.clip_grad_norm_(params, self.clip_grad_norm, foreach=True)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.step += 1
        names = [*losses, "total"]
        local = torch.stack([*(loss.detach().float() for loss in losses.values()),
                             total.detach().float()])
        # One reduction per step: every rank sees the same losses, so all stop together on a
        # non-finite one, and the progress bar shows the global batch's.
        averaged = sum_across(self.ranks, local) / self.ranks.world_size
        values = dict(zip(names, averaged.tolist(), strict=True))
        bad = [name for name, value in values.items() if not math.isfinite(value)]
        if bad:
            raise PebenchError(f"the loss of {', '.join(bad)} became non-finite at step "
                               f"{self.step}; lower --lr or check the data.")
        return values

    def fit(self, batches: Iterator[Batch],
            on_step: Callable[[int, dict[str, float]], None] | None = None) -> None:
        """Train from the current step to ``total_steps``, calling ``on_step(step, losses)``
        after each (progress display, periodic evaluation, checkpoints, stop requests)."""
        while self.step < self.total_steps:
            losses = self.train_step(next(batches))
            if on_step is not None:
                on_step(self.step, losses)
