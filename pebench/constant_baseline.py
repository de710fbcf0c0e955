"""The best constant prediction of each task: the floor a trained model must clear.

A model that has learned nothing about the image can still score well on a skewed split (all
background, all "facing the camera"), so "beats the untrained model" is not enough to say a
task was learned. This scores, on a dataset's evaluation split and with the task's own meter,
every constant raw output worth trying, and keeps the best per task:

* an integer target with C ≥ 2 outputs (softmax classes): each class everywhere;
* an integer target with one output (a sigmoid): everything positive, everything negative;
* a float target: the mean of its valid values (a pixel whose channels are all zero is
  invalid, the convention of every float target in ``pebench.task``).

The constant is chosen on the evaluation split itself (an oracle constant), so the floor is
as high as any constant could be there.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pebench.data.base import DATASETS
from pebench.evaluate import evaluate, primary_metrics
from pebench.loaders import eval_loader
from pebench.primary import registered_primary_metric
from pebench.ranking import floors
from pebench.task import get_task

SATURATED_LOGIT = 20.0  # sigmoid(±20) is 1 or 0 to float32 precision


class ConstantModel(nn.Module):
    """Answers every image with the same raw output per task (the model interface that
    ``evaluate`` uses)."""

    def __init__(self, outputs: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.outputs = outputs
        self.tasks = tuple(outputs)

    def prepare(self) -> None:
        """Nothing to generate."""

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        b, _, h, w = images.shape
        return {task: value.view(1, -1, 1, 1).expand(b, -1, h, w)
                for task, value in self.outputs.items()}


def constant_primaries(dataset: str, tasks: Sequence[str], img_size: int,
                       root: Path | None = None, batch_size: int = 32) -> dict[str, float]:
    """Each task's primary metric under its best constant prediction on ``dataset``'s
    evaluation split at ``img_size``."""
    source = DATASETS.get(dataset)()
    info = source.info
    split = source.build("val", root, img_size, tuple(tasks), train=False)
    batches = list(eval_loader(split, batch_size, 0, torch.device("cpu")))
    task_objects = {name: get_task(name) for name in tasks}
    candidates = {name: _candidates(batches, name, task_objects[name].out_channels(info))
                  for name in tasks}
    scores = []  # one pass per candidate index, over the tasks that have that many
    for index in range(max(len(c) for c in candidates.values())):
        active = {name: task_objects[name] for name, c in candidates.items() if index < len(c)}
        model = ConstantModel({name: candidates[name][index] for name in active})
        metrics = evaluate(model, batches, active, info, torch.device("cpu"))  # type: ignore[arg-type]
        scores.append(primary_metrics(metrics, active))
    return floors(scores, {name: registered_primary_metric(name) for name in tasks})


def _candidates(batches: list[dict[str, Any]], task: str, channels: int) -> list[torch.Tensor]:
    sample = batches[0][task]
    if not sample.is_floating_point():
        if channels == 1:
            return [torch.tensor([SATURATED_LOGIT]), torch.tensor([-SATURATED_LOGIT])]
        return [torch.where(torch.arange(channels) == k, SATURATED_LOGIT, 0.0)
                for k in range(channels)]
    total, count = torch.zeros(channels, dtype=torch.float64), 0
    for batch in batches:
        values = batch[task].movedim(1, -1).reshape(-1, channels).double()
        valid = values[(values != 0).any(dim=1)]
        total += valid.sum(dim=0)
        count += len(valid)
    return [(total / max(count, 1)).float()]

