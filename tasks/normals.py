"""Surface normal estimation: L1 on unit vectors, angular error in degrees."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from pebench.meters import NAN, check_prediction_shape
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

    def resize_prediction(self, prediction: torch.Tensor,
                          size: tuple[int, int]) -> torch.Tensor:
        """Unit normals resized bilinearly, then normalised again (an average of unit
        vectors is shorter than one), as the community's evaluation normalises the
        predictions it reads back."""
        return self.predict(super().resize_prediction(prediction, size))


class NormalsMeter:
    """Angular error of surface normals, in degrees, over every valid pixel of the split.

    Both prediction and target are L2-normalised over the channel dimension (so the
    prediction's scale is irrelevant) and the error is ``acos(clamp(dot, -1, 1))``, computed
    in float64 because float32 ``acos`` near 1 loses ~0.03° for nearly aligned vectors.
    Pixels whose target is the zero vector are ignored.

    The split is too large to keep every error (≈10⁹ pixels), so ``mean``, ``rmse`` (a true
    ``sqrt(mean(err²))``) and the ``within_*`` fractions (``err < t``, percent) come from
    exact float64 / int64 sums, while ``median`` comes from a histogram of 0.01° bins over
    [0°, 180°]: it is the bin centre of the middle element(s), hence within 0.005° of the
    exact median. All NaN if no valid pixel was seen.
    """

    THRESHOLDS: tuple[float, ...] = (11.25, 22.5, 30.0)
    BINS_PER_DEGREE: int = 100
    accumulators = ("count", "_sum", "_sum_sq", "_within", "_histogram")

    def __init__(self) -> None:
        self.count = 0
        self._sum = 0.0
        self._sum_sq = 0.0
        self._within = torch.zeros(len(self.THRESHOLDS), dtype=torch.int64)
        self._histogram = torch.zeros(180 * self.BINS_PER_DEGREE, dtype=torch.int64)

    @torch.no_grad()
    def update(self, prediction: torch.Tensor, target: torch.Tensor) -> None:
        """Add predicted normals (B, 3, H, W), any scale, against unit targets (B, 3, H, W)."""
        check_prediction_shape("NormalsMeter", prediction, target)
        if target.dim() != 4 or target.shape[1] != 3:
            raise ValueError(
                f"NormalsMeter: expected (B, 3, H, W) normals, got {tuple(target.shape)}."
            )
        valid = (target != 0).any(dim=1)  # (B, H, W)
        if not bool(valid.any()):
            return
        # Gather the valid pixels first so the float64 copy is only as large as needed.
        pred = prediction.to(target.device).movedim(1, -1)[valid].double()
        tgt = target.movedim(1, -1)[valid].double()
        pred = torch.nn.functional.normalize(pred, dim=-1, eps=1e-12)
        tgt = torch.nn.functional.normalize(tgt, dim=-1, eps=1e-12)
        cos = (pred * tgt).sum(-1).clamp(-1.0, 1.0)
        err = torch.rad2deg(torch.acos(cos))

        self.count += err.numel()
        self._sum += float(err.sum())
        self._sum_sq += float((err * err).sum())
        within = torch.stack([(err < t).sum() for t in self.THRESHOLDS])
        self._within += within.cpu()
        bins = self._histogram.numel()
        index = (err * self.BINS_PER_DEGREE).floor().long().clamp(0, bins - 1)
        self._histogram += torch.bincount(index, minlength=bins).cpu()

    def _median(self) -> float:
        cumulative = self._histogram.cumsum(0)
        # 0-based ranks of the middle element(s); equal for an odd count.
        ranks = torch.tensor([(self.count - 1) // 2, self.count // 2], dtype=torch.int64)
        index = torch.searchsorted(cumulative, ranks, right=True)
        centres = (index.double() + 0.5) / self.BINS_PER_DEGREE
        return float(centres.mean())

    def compute(self) -> dict[str, float]:
        keys = ["mean", "median", "rmse"] + [f"within_{t:g}" for t in self.THRESHOLDS]
        if self.count == 0:
            return dict.fromkeys(keys, NAN)
        n = self.count
        result = {
            "mean": self._sum / n,
            "median": self._median(),
            "rmse": math.sqrt(self._sum_sq / n),
        }
        for t, k in zip(self.THRESHOLDS, self._within.tolist(), strict=True):
            result[f"within_{t:g}"] = 100.0 * k / n
        return result
