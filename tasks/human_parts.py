"""Human part segmentation (PASCAL-Context: background + 6 parts)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pebench.task import IGNORE_INDEX, register_task
from tasks.semseg import SegmentationMeter, SegmentationTask

if TYPE_CHECKING:
    from pebench.data.base import DatasetInfo


@register_task
class HumanPartsTask(SegmentationTask):
    """Human part segmentation.

    Images without a person have an all-ignore target; the shared segmentation loss is then
    exactly 0 (still part of the graph). The meter skips every image whose target is all
    ignored or all background, as the community's ``eval_human_parts`` does by content (one
    label value, 255 or 0): such an image holds no part, and its predictions do not count.
    """

    name = "human_parts"
    description = "Human part segmentation: pixel cross-entropy, mIoU over images with people."
    # The weight of the published PASCAL-Context multi-task setting.
    loss_weight = 2.0
    primary_metric = "mIoU"
    higher_is_better = True
    num_classes_key = "human_parts"

    def meter(self, info: DatasetInfo) -> SegmentationMeter:
        return SegmentationMeter(self._num_classes(info), skip_uniform=(0, IGNORE_INDEX))
