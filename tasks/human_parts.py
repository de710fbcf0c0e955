"""Human part segmentation (PASCAL-Context: background + 6 parts)."""

from __future__ import annotations

from pebench.task import register_task
from tasks.semseg import SegmentationTask


@register_task
class HumanPartsTask(SegmentationTask):
    """Human part segmentation.

    Images without a person have an all-ignore target; the shared segmentation loss is then
    exactly 0 (still part of the graph) and the meter skips them, so they count for nothing.
    """

    name = "human_parts"
    description = "Human part segmentation: pixel cross-entropy, mIoU over images with people."
    # The weight of the published PASCAL-Context multi-task setting.
    loss_weight = 2.0
    primary_metric = "mIoU"
    higher_is_better = True
    num_classes_key = "human_parts"
