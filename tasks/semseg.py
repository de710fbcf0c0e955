"""Semantic segmentation, and the pixel-classification base it shares with human parts."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import torch
import torch.nn.functional as F

from pebench.errors import PebenchError
from pebench.meters import SegmentationMeter
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
