"""Monocular depth estimation: L1 on valid pixels, RMSE over the split."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

from pebench.meters import NAN, check_prediction_shape
from pebench.task import Task, check_same_shape, loss_precision, register_task

if TYPE_CHECKING:
    from pebench.data.base import DatasetInfo


# What the community's depth evaluation puts in place of a non-positive prediction.
DEPTH_FLOOR = 1e-9


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


class DepthMeter:
    """Depth errors over every valid pixel (target > 0) of the split, pooled, not per image.

    * ``rmse`` = sqrt(mean((pred − gt)²)), in the target's unit;
    * ``abs_rel`` = mean(|pred − gt| / gt) (a ratio, not percent);
    * ``log_rmse`` = sqrt(mean((log pred − log gt)²));
    * ``delta_1.25`` = percent of pixels with max(pred/gt, gt/pred) < 1.25.

    A prediction ≤ 0 is replaced by ``floor`` (1e-9) before every metric, as the community's
    ``eval_depth`` does before rmse and log_rmse: the log and the ratio are undefined for a
    non-positive depth, and one replaced prediction serves all four metrics alike (a depth
    of 1e-9 is never "within 1.25"). All NaN if no valid pixel was seen.
    """

    accumulators = ("count", "_sq", "_abs_rel", "_log_sq", "_delta")

    def __init__(self, floor: float = DEPTH_FLOOR) -> None:
        if floor <= 0:
            raise ValueError(f"DepthMeter: floor must be positive, got {floor}.")
        self.floor = floor
        self.count = 0
        self._sq = 0.0
        self._abs_rel = 0.0
        self._log_sq = 0.0
        self._delta = 0

    @torch.no_grad()
    def update(self, prediction: torch.Tensor, target: torch.Tensor) -> None:
        """Add predicted depth against target depth, both (B, 1, H, W) or both (B, H, W)."""
        check_prediction_shape("DepthMeter", prediction, target)
        valid = target > 0  # NaN targets compare False and are thereby ignored too
        if not bool(valid.any()):
            return
        gt = target[valid].double()
        pred = prediction.to(target.device)[valid].double()
        pred = torch.where(pred <= 0, torch.full_like(pred, self.floor), pred)
        diff = pred - gt
        ratio = torch.maximum(pred / gt, gt / pred)

        self.count += gt.numel()
        self._sq += float((diff * diff).sum())
        self._abs_rel += float((diff.abs() / gt).sum())
        self._log_sq += float(((pred.log() - gt.log()) ** 2).sum())
        self._delta += int((ratio < 1.25).sum())

    def compute(self) -> dict[str, float]:
        if self.count == 0:
            return dict.fromkeys(["rmse", "abs_rel", "log_rmse", "delta_1.25"], NAN)
        n = self.count
        return {
            "rmse": math.sqrt(self._sq / n),
            "abs_rel": self._abs_rel / n,
            "log_rmse": math.sqrt(self._log_sq / n),
            "delta_1.25": 100.0 * self._delta / n,
        }
