"""Monocular depth estimation: L1 on valid pixels, RMSE over the split."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from pebench.meters import DepthMeter
from pebench.task import Task, check_same_shape, loss_precision, register_task

if TYPE_CHECKING:
    from pebench.data.base import DatasetInfo


@register_task
class DepthTask(Task):
    """Depth (one channel, the target's metric unit; 0 = no measurement)."""

    name = "depth"
    description = "Depth: L1 on valid pixels, RMSE / abs-rel / log-RMSE / delta<1.25."
    loss_weight = 1.0
    primary_metric = "rmse"
    higher_is_better = False

    def out_channels(self, info: DatasetInfo) -> int:
        return 1

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean absolute error over pixels with target > 0; exactly 0 (in the graph) if none.

        Sensor holes are stored as 0, so they must not pull the prediction towards 0.
        """
        check_same_shape("depth", output, target)
        output = loss_precision(output)
        valid = target > 0
        diff = torch.where(valid, (output - target).abs(), torch.zeros_like(output))
        return diff.sum() / valid.sum().clamp(min=1)

    def predict(self, output: torch.Tensor) -> torch.Tensor:
        """The raw output: the decoder regresses depth directly."""
        return output

    def meter(self, info: DatasetInfo) -> DepthMeter:
        return DepthMeter()
