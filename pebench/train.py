"""The training loop. It owns all optimisation state (model, optimiser, scheduler, step) so that
mixed precision, DDP and exact resume can be added without reaching into other modules."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from pebench.errors import PebenchError
from pebench.model import MultiTaskModel
from pebench.schedule import adamw, warmup_cosine
from pebench.task import Task

Batch = dict[str, torch.Tensor]


@dataclass(frozen=True)
class OptimConfig:
    lr: float
    weight_decay: float
    warmup_fraction: float
    clip_grad_norm: float


class Trainer:
    def __init__(self, model: MultiTaskModel, tasks: dict[str, Task], total_steps: int,
                 optim: OptimConfig, device: torch.device) -> None:
        self.model = model
        self.tasks = tasks
        self.device = device
        self.total_steps = total_steps
        self.clip_grad_norm = optim.clip_grad_norm
        self.optimizer = adamw(model, optim.lr, optim.weight_decay)
        warmup = round(optim.warmup_fraction * total_steps)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, warmup_cosine(total_steps, warmup))
        self.parameter_sets = model.parameter_sets()
        self.step = 0

    def state_dict(self) -> dict[str, object]:
        """Optimiser, schedule and step: with the model's tensors, all a resume needs."""
        return {"step": self.step, "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict()}

    def load_state_dict(self, state: dict[str, object]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])  # type: ignore[arg-type]
        self.scheduler.load_state_dict(state["scheduler"])  # type: ignore[arg-type]
        self.step = int(state["step"])  # type: ignore[call-overload]

    def train_step(self, batch: Batch) -> dict[str, float]:
        """One optimisation step; returns the unweighted task losses and the weighted total."""
        self.model.train()
        batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
        self.model.prepare()
        outputs = self.model(batch["image"])
        losses = {name: task.loss(outputs[name], batch[name]) for name, task in self.tasks.items()}
        total = sum(task.loss_weight * losses[name] for name, task in self.tasks.items())
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        for params in self.parameter_sets:
            nn.utils.clip_grad_norm_(params, self.clip_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        values = {name: loss.item() for name, loss in losses.items()}
        values["total"] = float(total.item())
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
