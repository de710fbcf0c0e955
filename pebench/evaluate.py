"""Evaluation: one pass over a split through every task's meter, and Δm."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from pebench.data.base import DatasetInfo
from pebench.distributed import SINGLE, Ranks, sum_meter
from pebench.interrupt import StopRequest, StopRequested
from pebench.model import MultiTaskModel
from pebench.precision import autocast
from pebench.task import Task

Metrics = dict[str, dict[str, float]]


@torch.no_grad()
def evaluate(model: MultiTaskModel, batches: Iterable[dict[str, Any]],
             tasks: dict[str, Task], info: DatasetInfo, device: torch.device,
             stop: StopRequest | None = None, precision: str = "fp32",
             ranks: Ranks = SINGLE) -> Metrics:
    """Every meter value of every task over the whole split; a stop request ends it between
    two batches (StopRequested).

    Hypernetwork weights are generated once (``prepare``) and reused for every batch. The
    forward pass runs at ``precision``; the meters get float32 outputs. Where a label is not
    at the input size (evaluation at the original resolution: a batch's targets are then a
    list, one per image), each image's prediction is resized to its label's size by the
    task's ``resize_prediction`` before the meter sees it. Under data
    parallelism each rank passes its share of the split and the meters' counts are summed,
    so every rank returns the metrics of the whole split.
    """
    meters = {name: task.meter(info) for name, task in tasks.items()}
    was_training = model.training
    model.eval()
    with autocast(precision, device):
        model.prepare()
    for batch in batches:
        # Alone, a stop request ends an evaluation between two batches; ranks of a
        # data-parallel run each pass a share and then sum meters, so they finish it first.
        if stop is not None and stop.requested and not ranks.distributed:
            model.train(was_training)
            raise StopRequested
        with autocast(precision, device):
            outputs = model(batch["image"].to(device, non_blocking=True))
        for name, task in tasks.items():
            output, targets = outputs[name].float(), batch[name]
            if isinstance(targets, torch.Tensor) and targets.shape[-2:] == output.shape[-2:]:
                meters[name].update(task.predict(output),
                                    targets.to(device, non_blocking=True))
                continue
            for index, target in enumerate(targets):
                target = target.to(device, non_blocking=True)[None]
                prediction = task.predict(output[index:index + 1])
                meters[name].update(task.resize_prediction(prediction, target.shape[-2:]),
                                    target)
    model.train(was_training)
    for meter in meters.values():
        sum_meter(ranks, meter)
    return {name: meters[name].compute() for name in tasks}


def primary_metrics(metrics: Metrics, tasks: dict[str, Task]) -> dict[str, float]:
    return {name: metrics[name][task.primary_metric] for name, task in tasks.items()}
