"""Semantic segmentation, and the pixel-classification base it shares with human parts."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import torch
import torch.nn.functional as F

from pebench.errors import PebenchError
from pebench.meters import NAN, check_prediction_shape
from pebench.task import IGNORE_INDEX, Task, loss_precision, register_task

if TYPE_CHECKING:
    from pebench.data.base import DatasetInfo


class SegmentationTask(Task):
    """Per-pixel classification: cross-entropy on logits, argmax, confusion-count mIoU.

    Not registered itself; subclasses set ``name`` and the ``num_classes`` key they read from
    :class:`DatasetInfo`.
    """

    num_classes_key: ClassVar[str]

    def _num_classes(self, info: DatasetInfo) -> int:
        try:
            return info.num_classes[self.num_classes_key]
        except KeyError:
            raise PebenchError(
                f"dataset '{info.name}' does not declare a class count for "
                f"'{self.num_classes_key}' (DatasetInfo.num_classes); add it to the dataset "
                "or drop the task."
            ) from None

    def out_channels(self, info: DatasetInfo) -> int:
        return self._num_classes(info)

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Cross-entropy averaged over non-ignored pixels; exactly 0 if there are none.

        Summing and dividing by ``max(count, 1)`` instead of ``reduction="mean"`` avoids the
        0/0 = NaN of an all-ignored batch (human-parts batches without a person are common),
        keeps the zero attached to the graph so ``backward`` still works, and needs no
        host-device synchronisation to test for the empty case.
        """
        # float32 log-softmax even for half-precision logits (autocast would do the same).
        total = F.cross_entropy(loss_precision(output), target, ignore_index=IGNORE_INDEX,
                                reduction="sum")
        count = (target != IGNORE_INDEX).sum().clamp(min=1)
        return total / count

    def predict(self, output: torch.Tensor) -> torch.Tensor:
        """Class ids (B, H, W), int64."""
        return output.argmax(dim=1)

    def meter(self, info: DatasetInfo) -> SegmentationMeter:
        return SegmentationMeter(self._num_classes(info))


@register_task
class SemsegTask(SegmentationTask):
    """Semantic segmentation."""

    name = "semseg"
    description = "Semantic segmentation: pixel cross-entropy, mIoU over the split."
    loss_weight = 1.0
    primary_metric = "mIoU"
    higher_is_better = True
    num_classes_key = "semseg"


class SegmentationMeter:
    """Confusion-count mean IoU and pixel accuracy over a whole split.

    A ``num_classes × num_classes`` confusion matrix (rows: target, columns: prediction) is
    accumulated over every non-ignored pixel of the split; per class,
    ``IoU_c = TP / (TP + FP + FN)``. Pooling counts over the split (rather than averaging
    per-image IoUs) is the published PASCAL-Context protocol and keeps small images and
    images without a class from dominating.

    ``mIoU`` averages IoU over *every* class of the dataset, a class with
    ``TP + FP + FN = 0`` (absent from the split's targets and predictions) scoring 0: the rule
    of the community's evaluators (``eval_semseg`` / ``eval_human_parts`` of
    Multi-Task-Learning-PyTorch, after ASTMT), behind every published PASCAL-Context number.
    ``mIoU_present`` averages over the classes that occur in the target or the prediction
    only (such a class carries no evidence either way); both are in every run record. A class
    that is only ever *predicted* has ``TP = 0 < FP`` and scores 0 under both.

    Pixels whose target is ``ignore_index`` are dropped together with their prediction.
    ``skip_uniform`` names label values that, filling an image's whole target, make the meter
    skip that image (the community's human-parts rule: a target that is all background or all
    ignored holds no part and is not evaluated, its predictions included).

    ``compute`` returns ``{"mIoU", "mIoU_present", "pixel_acc"}`` in percent, NaN if no valid
    pixel was seen.
    """

    accumulators = ("confusion",)

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX,
                 skip_uniform: tuple[int, ...] = ()) -> None:
        if num_classes < 1:
            raise ValueError(f"SegmentationMeter: num_classes must be >= 1, got {num_classes}.")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.skip_uniform = skip_uniform
        self.confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64)

    @torch.no_grad()
    def update(self, prediction: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch of class ids (B, H, W) against targets (B, H, W)."""
        check_prediction_shape("SegmentationMeter", prediction, target)
        if prediction.is_floating_point() or prediction.is_complex():
            # Floats here almost always mean raw logits or probabilities, not Task.predict.
            raise ValueError(
                "SegmentationMeter: expected integer class ids (the argmax of Task.predict), "
                f"got a {prediction.dtype} tensor."
            )
        c = self.num_classes
        if self.skip_uniform:
            flat = target.reshape(target.shape[0], -1)
            uniform = (flat == flat[:, :1]).all(1)
            skipped = uniform & torch.isin(flat[:, 0], torch.tensor(
                self.skip_uniform, dtype=flat.dtype, device=flat.device))
            prediction, target = prediction[~skipped], target[~skipped]
        valid = target != self.ignore_index
        t = target[valid].long()
        p = prediction.to(target.device)[valid].long()
        if t.numel() == 0:
            return
        if bool(((t < 0) | (t >= c)).any()):
            bad = t[(t < 0) | (t >= c)].unique()[:5].tolist()
            raise ValueError(
                f"SegmentationMeter: target class ids {bad} are outside [0, {c}) and are not the "
                f"ignore index {self.ignore_index}; is num_classes right for this dataset?"
            )
        if bool(((p < 0) | (p >= c)).any()):
            bad = p[(p < 0) | (p >= c)].unique()[:5].tolist()
            raise ValueError(
                f"SegmentationMeter: predicted class ids {bad} are outside [0, {c}); the decoder "
                "has the wrong number of output channels."
            )
        # One bincount over (target, prediction) pairs builds the confusion matrix of the batch.
        counts = torch.bincount(t * c + p, minlength=c * c).reshape(c, c)
        self.confusion += counts.cpu()

    def iou_per_class(self) -> torch.Tensor:
        """float64 IoU per class; NaN for classes absent from both target and prediction (which
        ``mIoU`` counts as 0 and ``mIoU_present`` leaves out)."""
        conf = self.confusion.double()
        tp = conf.diagonal()
        union = conf.sum(0) + conf.sum(1) - tp  # = TP + FP + FN
        return torch.where(union > 0, tp / union.clamp(min=1), torch.full_like(tp, NAN))

    def compute(self) -> dict[str, float]:
        total = int(self.confusion.sum())
        if total == 0:
            return {"mIoU": NAN, "mIoU_present": NAN, "pixel_acc": NAN}
        iou = self.iou_per_class()
        present = ~torch.isnan(iou)
        correct = int(self.confusion.diagonal().sum())
        return {
            "mIoU": 100.0 * float(iou.nan_to_num(0.0).mean()),
            "mIoU_present": 100.0 * float(iou[present].mean()),
            "pixel_acc": 100.0 * correct / total,
        }
