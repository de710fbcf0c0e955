"""Edge detection: weighted binary cross-entropy, and a tolerance-matched F-measure.

Loss and weight follow the multi-task edge setting of the ASTMT / MTI-Net / ATRC / InvPT
code bases on PASCAL-Context and NYUD: a binary cross-entropy on logits whose positive
(edge) pixels weigh 0.95 and negative pixels 0.05 (their ``edge_w: 0.95``), averaged over
the valid pixels, with loss weight 50 in the multi-task sum (their ``loss_weights: edge:
50.0``).

Those papers score edges with the external SEISM toolbox: predictions are thinned and each
predicted edge pixel is matched one-to-one to a ground-truth edge pixel within a distance of
a fraction of the image diagonal (0.0075 for PASCAL-Context, 0.011 for NYUD), and the
reported odsF is the best F-measure over binarisation thresholds with counts pooled over the
dataset. :class:`EdgeMeter` approximates this inside the harness and says so in its metric
name, ``odsF_approx``: a predicted edge pixel counts as correct when *some* ground-truth
edge pixel lies within the tolerance radius (and a ground-truth pixel as found when some
predicted one does), without one-to-one matching and without thinning. Thick predictions
and many-to-one matches are therefore not penalised, so the approximation is optimistic
and not comparable to published odsF numbers; it is meant for comparing runs with each
other.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from pebench.errors import PebenchError
from pebench.task import IGNORE_INDEX, Task, loss_precision, register_task

if TYPE_CHECKING:
    from pebench.data.base import DatasetInfo

POSITIVE_WEIGHT = 0.95
# SEISM's default: 99 thresholds evenly spaced in (0, 1).
EDGE_THRESHOLDS: torch.Tensor = torch.linspace(0.01, 0.99, 99)


def weighted_edge_bce(logits: torch.Tensor, target: torch.Tensor,
                      positive_weight: float = POSITIVE_WEIGHT,
                      ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Mean over valid pixels of ``w·bce`` on edge pixels and ``(1 − w)·bce`` elsewhere.

    Edges cover a few percent of an image; the fixed weights keep the model from scoring
    well by predicting no edge. ``logits`` (B, 1, H, W) or (B, H, W), ``target`` (B, H, W)
    with 0 / 1 / ``ignore_index``. No valid pixel -> exactly 0, still in the graph.
    """
    if logits.dim() == target.dim() + 1:
        logits = logits.squeeze(1)
    if logits.shape != target.shape:
        raise ValueError(f"edge loss: logits {tuple(logits.shape)} do not match the target "
                         f"{tuple(target.shape)}.")
    logits = loss_precision(logits)
    valid = target != ignore_index
    positive = (target == 1) & valid
    bce = F.binary_cross_entropy_with_logits(logits, positive.to(logits.dtype), reduction="none")
    weight = torch.where(positive, bce.new_tensor(positive_weight),
                         bce.new_tensor(1.0 - positive_weight))  # in the loss's precision
    weighted = torch.where(valid, weight * bce, torch.zeros_like(bce))
    return weighted.sum() / valid.sum().clamp(min=1)


def disk_max(values: torch.Tensor, radius: float) -> torch.Tensor:
    """The maximum of (B, 1, H, W) non-negative ``values`` over a disk of ``radius`` pixels
    around each pixel (Euclidean distance ≤ radius), outside the image counting as 0.

    Built from one horizontal max-pool per row offset of the disk, so it costs 2r + 1 pools.
    """
    reach = math.floor(radius)
    height = values.shape[-2]
    result = torch.zeros_like(values)
    for dy in range(-reach, reach + 1):
        half = math.floor(math.sqrt(max(radius * radius - dy * dy, 0.0)))
        row = F.max_pool2d(values, kernel_size=(1, 2 * half + 1), stride=1, padding=(0, half))
        # out[y] = row[y + dy], zero where y + dy leaves the image
        shifted = torch.zeros_like(row)
        if dy >= 0:
            shifted[..., : height - dy, :] = row[..., dy:, :]
        else:
            shifted[..., -dy:, :] = row[..., : height + dy, :]
        result = torch.maximum(result, shifted)
    return result


class EdgeMeter:
    """Best F-measure over thresholds of tolerance-matched edges, counts pooled over a split.

    For each threshold t of ``thresholds``, a pixel is a predicted edge when its probability
    is ≥ t. With r = ``tolerance`` × the image diagonal (in pixels), precision is the share
    of predicted edge pixels that have a ground-truth edge pixel within distance r, and
    recall the share of ground-truth edge pixels that have a predicted edge pixel within r,
    both over the valid (non-ignored) pixels of the whole split. ``compute`` returns, in
    percent, ``odsF_approx`` = max over t of 2PR / (P + R), with ``precision`` and
    ``recall`` at that threshold and the ``threshold`` itself; NaN if the split had no
    ground-truth edge pixel. See the module docstring for how this differs from SEISM.
    """

    accumulators = ("predicted", "predicted_matched", "truth_found", "truth")

    def __init__(self, tolerance: float, thresholds: torch.Tensor = EDGE_THRESHOLDS,
                 ignore_index: int = IGNORE_INDEX) -> None:
        if not tolerance > 0:
            raise ValueError(f"EdgeMeter: the tolerance must be positive, got {tolerance}.")
        self.tolerance = tolerance
        self.thresholds = thresholds.double().cpu()
        self.ignore_index = ignore_index
        count = len(self.thresholds)
        self.predicted = torch.zeros(count, dtype=torch.int64)
        self.predicted_matched = torch.zeros(count, dtype=torch.int64)
        self.truth_found = torch.zeros(count, dtype=torch.int64)
        self.truth = 0

    def _at_least(self, values: torch.Tensor) -> torch.Tensor:
        """How many of ``values`` are ≥ each threshold."""
        thresholds = self.thresholds.to(values.device, values.dtype)
        # bucketize(right=True) = the number of thresholds ≤ each value
        index = torch.bucketize(values, thresholds, right=True)
        histogram = torch.bincount(index, minlength=len(thresholds) + 1)
        tail = histogram.flip(0).cumsum(0).flip(0)  # tail[k] = #values with index ≥ k
        return tail[1:].cpu()

    @torch.no_grad()
    def update(self, prediction: torch.Tensor, target: torch.Tensor) -> None:
        """Add edge probabilities (B, 1, H, W) or (B, H, W) against targets (B, H, W)."""
        if prediction.dim() == 4:
            prediction = prediction.squeeze(1)
        if prediction.shape != target.shape:
            raise ValueError(f"EdgeMeter: prediction shape {tuple(prediction.shape)} != target "
                             f"shape {tuple(target.shape)}; pass Task.predict's output.")
        if prediction.numel() and (prediction.min() < 0 or prediction.max() > 1):
            raise ValueError("EdgeMeter: expected probabilities in [0, 1] (Task.predict), "
                             "got values outside.")
        prediction = prediction.double()
        valid = target != self.ignore_index
        truth = (target == 1) & valid
        probability = torch.where(valid, prediction, torch.zeros_like(prediction))
        radius = self.tolerance * math.hypot(target.shape[-2], target.shape[-1])
        near_truth = disk_max(truth[:, None].double(), radius)[:, 0] > 0
        near_prediction = disk_max(probability[:, None], radius)[:, 0]

        self.predicted += self._at_least(probability[valid])
        self.predicted_matched += self._at_least(probability[valid & near_truth])
        self.truth_found += self._at_least(near_prediction[truth])
        self.truth += int(truth.sum())

    def compute(self) -> dict[str, float]:
        nan = float("nan")
        if self.truth == 0:
            return {"odsF_approx": nan, "precision": nan, "recall": nan, "threshold": nan}
        predicted = self.predicted.double()
        precision = torch.where(predicted > 0, self.predicted_matched / predicted.clamp(min=1),
                                torch.zeros_like(predicted))
        recall = self.truth_found.double() / self.truth
        total = precision + recall
        f = torch.where(total > 0, 2 * precision * recall / total.clamp(min=1e-12),
                        torch.zeros_like(total))
        best = int(torch.argmax(f))  # the first (lowest) threshold of the best F
        return {"odsF_approx": 100.0 * float(f[best]), "precision": 100.0 * float(precision[best]),
                "recall": 100.0 * float(recall[best]), "threshold": float(self.thresholds[best])}


@register_task
class EdgeTask(Task):
    """Edge detection (one logit per pixel)."""

    name = "edge"
    description = ("Edges: weighted BCE (0.95 / 0.05), odsF_approx: tolerance-matched "
                   "max-threshold F (an approximation of SEISM's odsF)")
    loss_weight = 50.0
    primary_metric = "odsF_approx"
    higher_is_better = True

    def out_channels(self, info: DatasetInfo) -> int:
        return 1

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return weighted_edge_bce(output, target)

    def predict(self, output: torch.Tensor) -> torch.Tensor:
        """Edge probabilities (B, 1, H, W): the only sigmoid of the edge pipeline."""
        return torch.sigmoid(output)

    def meter(self, info: DatasetInfo) -> EdgeMeter:
        """The meter at the dataset's matching tolerance (``task_settings``: the edge task's
        ``tolerance``, a fraction of the image diagonal, as its published protocol sets it)."""
        tolerance = info.task_setting(self.name, "tolerance")
        if tolerance is None:
            raise PebenchError(
                f"dataset '{info.name}' declares no edge matching tolerance; add "
                f"task_settings={{'{self.name}': {{'tolerance': FRACTION_OF_DIAGONAL}}}} to its "
                "DatasetInfo or drop the edge task.")
        return EdgeMeter(tolerance)
