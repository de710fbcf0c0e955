"""Surface normal estimation: L1 on unit vectors, angular error in degrees."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from pebench.meters import NormalsMeter
from pebench.task import Task, check_same_shape, loss_precision, register_task

if TYPE_CHECKING:
    from pebench.data.base import DatasetInfo

# Guards the normalisation of a (near-)zero prediction; F.normalize divides by max(norm, eps).
NORMALIZE_EPS = 1e-12


@register_task
class NormalsTask(Task):
    """Surface normals (3 channels, x right, y down, z towards the camera)."""

    name = "normals"
    description = "Surface normals: L1 on normalised vectors, mean angular error in degrees."
    loss_weight = 10.0
    primary_metric = "mean"
    higher_is_better = False

    def out_channels(self, info: DatasetInfo) -> int:
        return 3

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """L1 between the unit prediction and the target, mean over valid pixel components.

        Normalising first makes the loss depend on direction only, the quantity that is
        evaluated. Pixels whose target is the zero vector are ignored; with none valid the loss
        is exactly 0 and still attached to the graph.
        """
        check_same_shape("normals", output, target)
        unit = F.normalize(loss_precision(output), p=2, dim=1, eps=NORMALIZE_EPS)
        valid = (target != 0).any(dim=1, keepdim=True).expand_as(unit)
        diff = torch.where(valid, (unit - target).abs(), torch.zeros_like(unit))
        return diff.sum() / valid.sum().clamp(min=1)

    def predict(self, output: torch.Tensor) -> torch.Tensor:
        """Unit normals (B, 3, H, W)."""
        return F.normalize(output, p=2, dim=1, eps=NORMALIZE_EPS)

    def meter(self, info: DatasetInfo) -> NormalsMeter:
        return NormalsMeter()
