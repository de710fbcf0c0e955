"""Salient object detection: balanced binary cross-entropy, max-over-thresholds mIoU / F."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from pebench.meters import SaliencyMeter
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
