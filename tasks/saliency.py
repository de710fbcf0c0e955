"""Salient object detection: balanced binary cross-entropy, max-over-thresholds mIoU / F."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from pebench.meters import NAN, check_prediction_shape, drop_channel
from pebench.task import IGNORE_INDEX, Task, loss_precision, register_task

if TYPE_CHECKING:
    from pebench.data.base import DatasetInfo


def balanced_bce_with_logits(logits: torch.Tensor, target: torch.Tensor,
                             ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Class-frequency balanced BCE on logits, over the valid pixels of the whole batch.

    With ``w`` the fraction of negative valid pixels,
    ``loss = (w · Σ_pos bce + (1 − w) · Σ_neg bce) / n_valid``: salient pixels are usually
    the minority, and weighting each class by the *other* class's frequency stops the model
    from scoring well by predicting "not salient" everywhere. ``logits`` is (B, 1, H, W) or
    (B, H, W), ``target`` (B, H, W) with 0 / 1 / ``ignore_index``. No valid pixel -> exactly
    0, still attached to the graph.
    """
    if logits.dim() == target.dim() + 1:
        logits = logits.squeeze(1)
    if logits.shape != target.shape:
        raise ValueError(f"saliency loss: logits {tuple(logits.shape)} do not match the target "
                         f"{tuple(target.shape)}.")
    logits = loss_precision(logits)
    valid = target != ignore_index
    positive = (target == 1) & valid
    negative = valid & ~positive
    # binary_cross_entropy_with_logits uses the stable max(x, 0) - x·y + log(1 + e^-|x|) form.
    bce = F.binary_cross_entropy_with_logits(logits, positive.to(logits.dtype), reduction="none")
    zero = torch.zeros_like(bce)
    pos_sum = torch.where(positive, bce, zero).sum()
    neg_sum = torch.where(negative, bce, zero).sum()
    n_valid = valid.sum().clamp(min=1).to(bce.dtype)
    w = negative.sum().to(bce.dtype) / n_valid
    return (w * pos_sum + (1 - w) * neg_sum) / n_valid


# The published saliency protocol sweeps these binarisation thresholds and reports the best.
# Built in float64, as the community's numpy linspace is, then rounded once to float32 by the
# meter: a float32 linspace puts 0.45, 0.55, 0.6, 0.8 and 0.85 one float32 step off, which
# moves the scores of 8-bit probability maps whose values sit exactly on a threshold.
SALIENCY_THRESHOLDS: torch.Tensor = torch.linspace(0.2, 0.9, 15, dtype=torch.float64)


@register_task
class SaliencyTask(Task):
    """Salient object detection (one logit per pixel)."""

    name = "saliency"
    description = "Saliency: balanced BCE on logits, max-threshold mIoU and maxF."
    loss_weight = 5.0
    primary_metric = "mIoU"
    higher_is_better = True

    def out_channels(self, info: DatasetInfo) -> int:
        return 1

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return balanced_bce_with_logits(output, target)

    def predict(self, output: torch.Tensor) -> torch.Tensor:
        """Probabilities (B, 1, H, W).

        The only sigmoid of the saliency pipeline: the loss takes logits and the meter takes
        these probabilities (it rejects values outside [0, 1], but cannot see a second sigmoid).
        """
        return torch.sigmoid(output)

    def meter(self, info: DatasetInfo) -> SaliencyMeter:
        return SaliencyMeter()


class SaliencyMeter:
    """Per-image IoU / precision / recall of thresholded saliency probabilities.

    ``prediction`` must be probabilities in [0, 1] — the output of ``SaliencyTask.predict``,
    which is the only place in the harness where a sigmoid is applied. Values outside [0, 1]
    (raw logits, i.e. a missing sigmoid) raise ``ValueError``. A *double* sigmoid cannot be
    detected from the values alone (it maps into [0.5, 0.731]), which is why applying the
    sigmoid exactly once, in ``predict``, is a rule rather than a check.

    For every image and every threshold ``t`` a pixel is predicted salient when ``p > t``
    (strictly, as in the reference evaluation); on the valid pixels (target != 255):

    * IoU = TP / (TP + FP + FN), and 1 when prediction and target are both empty (a correct
      "nothing salient here" answer);
    * precision = TP / (TP + FP + 1e-12), recall = TP / (TP + FN + 1e-12).

    These are averaged over images per threshold. ``mIoU`` is the best mean IoU over the
    thresholds; ``maxF`` is the best ``2·P̄·R̄ / (P̄ + R̄ + 1e-12)`` where P̄, R̄ are the
    per-threshold means over images (F of the means, not a mean of per-image F). Both in
    percent. Images with no valid pixel are skipped; no image seen -> NaN.
    """

    accumulators = ("_iou_sum", "_precision_sum", "_recall_sum", "num_images")

    def __init__(self, thresholds: torch.Tensor | None = None,
                 ignore_index: int = IGNORE_INDEX) -> None:
        thr = SALIENCY_THRESHOLDS if thresholds is None else thresholds
        self.thresholds = thr.detach().to(torch.float32).flatten().cpu()
        self.ignore_index = ignore_index
        n = self.thresholds.numel()
        self._iou_sum = torch.zeros(n, dtype=torch.float64)
        self._precision_sum = torch.zeros(n, dtype=torch.float64)
        self._recall_sum = torch.zeros(n, dtype=torch.float64)
        self.num_images = 0

    @torch.no_grad()
    def update(self, prediction: torch.Tensor, target: torch.Tensor) -> None:
        """Add probabilities (B, 1, H, W) or (B, H, W) against targets (B, H, W)."""
        prob = drop_channel("SaliencyMeter", prediction, "probability map")
        tgt = drop_channel("SaliencyMeter", target, "target")
        check_prediction_shape("SaliencyMeter", prob, tgt)
        prob = prob.to(tgt.device)
        # The negated form also rejects NaN, which would otherwise pass every comparison.
        out_of_range = ~((prob >= 0) & (prob <= 1))
        if bool(out_of_range.any()):
            finite = prob[torch.isfinite(prob)]
            lo = float(finite.min()) if finite.numel() else NAN
            hi = float(finite.max()) if finite.numel() else NAN
            raise ValueError(
                "SaliencyMeter: predictions must be probabilities in [0, 1] (the output of "
                f"SaliencyTask.predict), got values in [{lo:.4g}, {hi:.4g}]"
                f"{' and NaN' if bool(torch.isnan(prob).any()) else ''}. Raw logits? Apply "
                "predict (one sigmoid) before the meter."
            )
        valid = tgt != self.ignore_index
        if bool((tgt[valid] > 1).any() | (tgt[valid] < 0).any()):
            raise ValueError(
                "SaliencyMeter: targets must be 0 (background), 1 (salient) or "
                f"{self.ignore_index} (ignore)."
            )
        b = prob.shape[0]
        prob = prob.reshape(b, -1)
        if prob.is_floating_point() and prob.element_size() < 4:
            # A Python-float threshold would be rounded to half precision in the comparison.
            prob = prob.float()
        valid = valid.reshape(b, -1)
        positive = (tgt.reshape(b, -1) == 1) & valid
        keep = valid.any(1)  # images with no valid pixel carry no evidence
        if not bool(keep.any()):
            return
        prob, valid, positive = prob[keep], valid[keep], positive[keep]

        # One threshold at a time keeps memory at one (B, N) mask instead of (B, T, N).
        n_pos = positive.sum(-1, dtype=torch.float64)  # (B,)
        tp = torch.empty(prob.shape[0], len(self.thresholds), dtype=torch.float64,
                         device=prob.device)
        n_pred = torch.empty_like(tp)
        for j, t in enumerate(self.thresholds.tolist()):
            predicted = (prob > t) & valid
            tp[:, j] = (predicted & positive).sum(-1, dtype=torch.float64)
            n_pred[:, j] = predicted.sum(-1, dtype=torch.float64)
        fp = n_pred - tp
        fn = n_pos[:, None] - tp
        union = tp + fp + fn
        iou = torch.where(union > 0, tp / union.clamp(min=1), torch.ones_like(tp))
        precision = tp / (tp + fp + 1e-12)
        recall = tp / (tp + fn + 1e-12)

        self._iou_sum += iou.sum(0).cpu()
        self._precision_sum += precision.sum(0).cpu()
        self._recall_sum += recall.sum(0).cpu()
        self.num_images += int(keep.sum())

    def per_threshold(self) -> dict[str, torch.Tensor]:
        """Mean over images of IoU, precision and recall at every threshold (float64, 0–1)."""
        n = self.num_images
        if n == 0:
            nan = torch.full_like(self._iou_sum, NAN)
            return {"iou": nan, "precision": nan.clone(), "recall": nan.clone()}
        return {
            "iou": self._iou_sum / n,
            "precision": self._precision_sum / n,
            "recall": self._recall_sum / n,
        }

    def compute(self) -> dict[str, float]:
        if self.num_images == 0:
            return {"mIoU": NAN, "maxF": NAN}
        curves = self.per_threshold()
        p, r = curves["precision"], curves["recall"]
        f = 2 * p * r / (p + r + 1e-12)
        return {
            "mIoU": 100.0 * float(curves["iou"].max()),
            "maxF": 100.0 * float(f.max()),
        }
