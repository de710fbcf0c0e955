"""Meters against numbers computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tasks.depth import DepthMeter
from tasks.normals import NormalsMeter
from tasks.saliency import SALIENCY_THRESHOLDS, SaliencyMeter
from tasks.semseg import SegmentationMeter

X = 255  # the ignore index


def _seg_example() -> tuple[torch.Tensor, torch.Tensor]:
    """Two 2×3 images, 3 ignored pixels.

    Image 1 valid pairs (target→pred): 0→0, 0→1, 1→1, 1→1, 2→2.
    Image 2 valid pairs: 0→0, 0→2, 0→0.
    Class 0: TP 3, FP 0, FN 2 -> 3/5. Class 1: TP 2, FP 1, FN 0 -> 2/3.
    Class 2: TP 1, FP 1, FN 0 -> 1/2. 6 of 8 valid pixels correct.
    """
    target = torch.tensor([[[0, 0, 1], [1, X, 2]],
                           [[0, 0, 0], [X, X, X]]])
    pred = torch.tensor([[[0, 1, 1], [1, 2, 2]],
                         [[0, 2, 0], [1, 1, 3]]])  # class 3 only where ignored
    return pred, target


# Over the three classes the example holds; the community's mIoU divides by every class.
SEG_MIOU = 100 * (3 / 5 + 2 / 3 + 1 / 2) / 3
SEG_ACC = 100 * 6 / 8


def test_miou_hand_example_counts_absent_classes_as_zero() -> None:
    pred, target = _seg_example()
    meter = SegmentationMeter(num_classes=5)  # classes 3, 4 never seen (3 only at ignores)
    meter.update(pred, target)
    result = meter.compute()
    assert result["mIoU"] == pytest.approx(100 * (3 / 5 + 2 / 3 + 1 / 2 + 0 + 0) / 5, abs=1e-9)
    assert result["mIoU_present"] == pytest.approx(SEG_MIOU, abs=1e-9)
    assert result["pixel_acc"] == pytest.approx(SEG_ACC, abs=1e-9)
    iou = meter.iou_per_class()
    assert iou[:3].tolist() == pytest.approx([3 / 5, 2 / 3, 1 / 2])
    assert torch.isnan(iou[3:]).all()


def test_miou_class_only_predicted_counts_as_zero() -> None:
    meter = SegmentationMeter(num_classes=3)
    target = torch.zeros(1, 1, 4, dtype=torch.long)
    pred = torch.tensor([[[0, 0, 0, 1]]])
    meter.update(pred, target)
    # Class 0: TP 3, FN 1 -> 3/4; class 1: FP 1 -> 0; class 2 absent -> 0, or left out.
    assert meter.compute()["mIoU"] == pytest.approx(100 * (3 / 4 + 0 + 0) / 3)
    assert meter.compute()["mIoU_present"] == pytest.approx(100 * (3 / 4 + 0) / 2)


def test_miou_accumulation_equals_concatenation() -> None:
    gen = torch.Generator().manual_seed(0)
    target = torch.randint(0, 6, (6, 5, 7), generator=gen)
    target[torch.rand(target.shape, generator=gen) < 0.2] = X
    pred = torch.randint(0, 6, (6, 5, 7), generator=gen)
    whole, parts = SegmentationMeter(6), SegmentationMeter(6)
    whole.update(pred, target)
    for lo, hi in [(0, 1), (1, 4), (4, 6)]:
        parts.update(pred[lo:hi], target[lo:hi])
    assert torch.equal(whole.confusion, parts.confusion)
    assert whole.compute() == parts.compute()
    # Pooled over the split, not a mean of per-batch mIoUs.
    pred_a, target_a = _seg_example()
    per_batch = SegmentationMeter(3)  # every class occurs: both rules agree
    per_batch.update(pred_a[:1].clamp(max=2), target_a[:1])
    per_batch.update(pred_a[1:].clamp(max=2), target_a[1:])
    assert per_batch.compute()["mIoU"] == pytest.approx(SEG_MIOU)
    assert per_batch.compute()["mIoU_present"] == pytest.approx(SEG_MIOU)


def test_miou_all_ignored_contributes_nothing_and_empty_is_nan() -> None:
    meter = SegmentationMeter(3)
    meter.update(torch.ones(2, 3, 3, dtype=torch.long), torch.full((2, 3, 3), X))
    assert all(math.isnan(v) for v in meter.compute().values())
    pred, target = _seg_example()
    meter.update(pred.clamp(max=2), target)
    meter.update(torch.zeros(1, 2, 3, dtype=torch.long), torch.full((1, 2, 3), X))
    assert meter.compute()["mIoU"] == pytest.approx(SEG_MIOU)


def test_images_of_one_skipped_label_value_are_not_evaluated() -> None:
    # The community's human-parts rule: a target that is all background (0) or all ignored
    # holds no part, and the image is skipped, its predictions included; a target with a
    # part, or with background and ignored pixels, is evaluated.
    background = torch.zeros(1, 2, 2, dtype=torch.long)
    ignored = torch.full((1, 2, 2), X)
    with_part = torch.tensor([[[0, 1], [1, X]]])
    mixed = torch.tensor([[[0, 0], [X, X]]])
    wrong = torch.ones(1, 2, 2, dtype=torch.long)  # predicts part 1 everywhere
    target = torch.cat([background, ignored, with_part, mixed])
    skipping = SegmentationMeter(3, skip_uniform=(0, X))
    skipping.update(wrong.expand(4, 2, 2), target)
    # Evaluated: with_part (0→1, 1→1, 1→1) and mixed (0→1, 0→1).
    # Class 0: FN 3 -> 0; class 1: TP 2, FP 3 -> 2/5; class 2 absent -> 0.
    assert skipping.compute()["mIoU"] == pytest.approx(100 * (0 + 2 / 5 + 0) / 3)
    plain = SegmentationMeter(3)
    plain.update(wrong.expand(4, 2, 2), target)  # the background image adds 4 FP of class 1
    assert plain.compute()["mIoU"] == pytest.approx(100 * (0 + 2 / 9 + 0) / 3)


def test_miou_rejects_bad_inputs() -> None:
    meter = SegmentationMeter(3)
    with pytest.raises(ValueError, match="outside"):
        meter.update(torch.zeros(1, 2, 2, dtype=torch.long), torch.full((1, 2, 2), 7))
    with pytest.raises(ValueError, match="shape"):
        meter.update(torch.zeros(1, 3, 2, 2, dtype=torch.long), torch.zeros(1, 2, 2).long())
    with pytest.raises(ValueError, match="integer class ids"):
        meter.update(torch.zeros(1, 2, 2), torch.zeros(1, 2, 2).long())


# --- saliency -------------------------------------------------------------------------------


def _sal(values: list[list[float]]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)[:, None, None, :]  # (B, 1, 1, N)


def _sal_target(values: list[list[int]]) -> torch.Tensor:
    return torch.tensor(values)[:, None, :]  # (B, 1, N)


def test_saliency_thresholds_are_the_published_ones() -> None:
    assert SALIENCY_THRESHOLDS.tolist() == pytest.approx([0.2 + 0.05 * i for i in range(15)])
    # Float64 like numpy's linspace, then rounded once to float32: a float32 linspace lands
    # one float32 step off on several thresholds.
    community = torch.tensor(np.linspace(0.2, 0.9, 15)).float()
    assert torch.equal(SaliencyMeter().thresholds, community)
    assert not torch.equal(torch.linspace(0.2, 0.9, 15), community)


def test_saliency_an_8_bit_map_on_a_threshold_scores_as_the_community_does() -> None:
    # 0.6 in float32 (from float64) is 0.60000002384; a float32 linspace gives 0.59999996424.
    # An 8-bit map value of 153/255 = 0.6 (float32: 0.60000002384) is "> 0.6" under the
    # latter only: with the community's threshold it is not salient.
    prob = torch.full((1, 1, 2, 2), 153 / 255, dtype=torch.float32)
    target = torch.ones(1, 2, 2, dtype=torch.long)
    meter = SaliencyMeter()
    meter.update(prob, target)
    at_0_6 = meter.per_threshold()["iou"][8]
    assert float(meter.thresholds[8]) == pytest.approx(0.6)
    assert at_0_6 == 0.0


def test_saliency_single_image_by_hand() -> None:
    meter = SaliencyMeter()
    # p > 0.2..0.4 -> [0,1,1,1]; 0.45..0.6 -> [0,0,1,1]; 0.65..0.9 -> [0,0,0,1].
    meter.update(_sal([[0.1, 0.42, 0.62, 0.93]]), _sal_target([[0, 1, 1, 0]]))
    curves = meter.per_threshold()
    # t = 0.2: TP 2, FP 1, FN 0.
    assert curves["iou"][0].item() == pytest.approx(2 / 3)
    assert curves["precision"][0].item() == pytest.approx(2 / 3)
    assert curves["recall"][0].item() == pytest.approx(1.0)
    # t = 0.5 (index 6): TP 1, FP 1, FN 1.
    assert curves["iou"][6].item() == pytest.approx(1 / 3)
    assert curves["precision"][6].item() == pytest.approx(1 / 2)
    assert curves["recall"][6].item() == pytest.approx(1 / 2)
    # t = 0.9: TP 0, FP 1, FN 2.
    assert curves["iou"][14].item() == 0.0
    assert curves["precision"][14].item() == 0.0
    assert curves["recall"][14].item() == 0.0
    result = meter.compute()
    assert result["mIoU"] == pytest.approx(100 * 2 / 3)
    assert result["maxF"] == pytest.approx(100 * 2 * (2 / 3) / (2 / 3 + 1), abs=1e-6)  # 80


def test_saliency_threshold_is_strict() -> None:
    # 0.25, 0.5 and 0.75 are exact in float32: a pixel at exactly t is not salient at t.
    meter = SaliencyMeter()
    meter.update(_sal([[0.5, 0.5]]), _sal_target([[1, 0]]))
    iou = meter.per_threshold()["iou"]
    assert iou[5].item() == pytest.approx(1 / 2)  # t = 0.45: both predicted
    assert iou[6].item() == 0.0  # t = 0.5: none predicted, one salient pixel missed


def test_saliency_empty_prediction_and_target_is_iou_one() -> None:
    meter = SaliencyMeter()
    # Nothing salient, nothing predicted; the ignored pixel's high score does not count.
    meter.update(_sal([[0.1, 0.15, 0.99]]), _sal_target([[0, 0, X]]))
    curves = meter.per_threshold()
    assert curves["iou"].tolist() == [1.0] * 15
    assert curves["precision"].tolist() == [0.0] * 15
    result = meter.compute()
    assert result["mIoU"] == pytest.approx(100.0)
    assert result["maxF"] == 0.0

    # Mixed with an image that is right only at high thresholds: the rule decides the max.
    meter.update(_sal([[0.27, 0.27, 0.72, 0.72]]), _sal_target([[0, 0, 0, 0]]))
    # Image 2: t < 0.27 all predicted, t in [0.3, 0.7] half, t >= 0.75 none (IoU 1).
    assert meter.per_threshold()["iou"].tolist() == pytest.approx([0.5] * 11 + [1.0] * 4)


def test_saliency_maxf_is_f_of_mean_precision_and_recall() -> None:
    meter = SaliencyMeter()
    # For t <= 0.8: image 1 P=1, R=1/2; image 2 P=1/2, R=1. Means 3/4, 3/4 -> F = 3/4,
    # whereas the mean of the per-image F values would be 2/3.
    meter.update(_sal([[0.83, 0.1], [0.83, 0.83]]), _sal_target([[1, 1], [1, 0]]))
    result = meter.compute()
    assert result["maxF"] == pytest.approx(75.0, abs=1e-6)
    assert result["mIoU"] == pytest.approx(50.0)


def test_saliency_accumulates_images_across_updates() -> None:
    probs = _sal([[0.1, 0.42, 0.62, 0.93], [0.83, 0.1, 0.3, 0.7], [0.5, 0.6, 0.7, 0.3]])
    target = _sal_target([[0, 1, 1, 0], [1, 1, 0, X], [0, 0, 0, 1]])
    whole, parts = SaliencyMeter(), SaliencyMeter()
    whole.update(probs, target)
    parts.update(probs[:1], target[:1])
    parts.update(probs[1:], target[1:])
    assert parts.num_images == whole.num_images == 3
    assert parts.compute() == pytest.approx(whole.compute())


@pytest.mark.parametrize("bad", [1.5, -0.1, float("nan"), 3.0])
def test_saliency_rejects_values_outside_unit_interval(bad: float) -> None:
    meter = SaliencyMeter()
    with pytest.raises(ValueError, match=r"probabilities in \[0, 1\]"):
        meter.update(_sal([[0.2, bad]]), _sal_target([[0, 1]]))
    assert meter.num_images == 0


def test_saliency_rejects_raw_logits_and_empty_is_nan() -> None:
    meter = SaliencyMeter()
    logits = torch.tensor([[[[-2.0, 3.0]]]])
    with pytest.raises(ValueError, match="Raw logits"):
        meter.update(logits, _sal_target([[0, 1]]))
    meter.update(_sal([[0.3, 0.4]]), _sal_target([[X, X]]))  # no valid pixel: skipped
    assert meter.num_images == 0
    assert all(math.isnan(v) for v in meter.compute().values())


# --- normals --------------------------------------------------------------------------------


def _normals(vectors: list[tuple[float, float, float]]) -> torch.Tensor:
    return torch.tensor(vectors, dtype=torch.float32).T[None, :, None, :]  # (1, 3, 1, N)


def _deg(a: float) -> tuple[float, float, float]:
    r = math.radians(a)
    return (math.cos(r), math.sin(r), 0.0)


def test_normals_meter_known_angles() -> None:
    pred = _normals([(1, 0, 0), (1, 0, 0), (1, 1, 0), (0, 0, 3), _deg(20), _deg(25), (-1, 0, 0)])
    target = _normals([(1, 0, 0), (0, 1, 0), (1, 0, 0), (0, 0, 1), (1, 0, 0), (1, 0, 0),
                       (0, 0, 0)])  # the last pixel is invalid
    meter = NormalsMeter()
    meter.update(pred, target)
    errors = [0.0, 90.0, 45.0, 0.0, 20.0, 25.0]
    result = meter.compute()
    assert meter.count == 6
    assert result["mean"] == pytest.approx(sum(errors) / 6, abs=1e-4)  # 30
    assert result["rmse"] == pytest.approx(math.sqrt(sum(e * e for e in errors) / 6), abs=1e-4)
    assert result["median"] == pytest.approx(22.5, abs=0.0051)  # (20 + 25) / 2, 0.01° bins
    assert result["within_11.25"] == pytest.approx(100 * 2 / 6)
    assert result["within_22.5"] == pytest.approx(100 * 3 / 6)
    assert result["within_30"] == pytest.approx(100 * 4 / 6)


def test_normals_meter_scale_invariant_and_accumulates() -> None:
    gen = torch.Generator().manual_seed(1)
    pred = torch.randn(3, 3, 4, 5, generator=gen)
    target = torch.nn.functional.normalize(torch.randn(3, 3, 4, 5, generator=gen), dim=1)
    target[:, :, 0] = 0
    a, b, c = NormalsMeter(), NormalsMeter(), NormalsMeter()
    a.update(pred, target)
    b.update(pred * 7.5, target)
    c.update(pred[:1], target[:1])
    c.update(pred[1:], target[1:])
    assert a.count == b.count == c.count == 3 * 4 * 5 - 3 * 5
    assert b.compute() == pytest.approx(a.compute())
    assert c.compute() == pytest.approx(a.compute())


def test_normals_median_within_histogram_resolution() -> None:
    gen = torch.Generator().manual_seed(2)
    pred = torch.randn(2, 3, 30, 31, generator=gen)
    target = torch.nn.functional.normalize(torch.randn(2, 3, 30, 31, generator=gen), dim=1)
    meter = NormalsMeter()
    meter.update(pred, target)
    unit = torch.nn.functional.normalize
    cos = (unit(pred.double(), dim=1) * unit(target.double(), dim=1)).sum(1)
    errors = torch.rad2deg(torch.acos(cos.clamp(-1, 1))).flatten()
    exact = errors.sort().values
    n = errors.numel()
    exact_median = float((exact[(n - 1) // 2] + exact[n // 2]) / 2)
    result = meter.compute()
    assert result["median"] == pytest.approx(exact_median, abs=0.005 + 1e-9)
    assert result["mean"] == pytest.approx(float(errors.mean()), rel=1e-9)
    assert result["rmse"] == pytest.approx(float(errors.pow(2).mean().sqrt()), rel=1e-9)


def test_normals_meter_no_valid_pixel_is_nan() -> None:
    meter = NormalsMeter()
    meter.update(torch.randn(1, 3, 2, 2), torch.zeros(1, 3, 2, 2))
    result = meter.compute()
    assert set(result) == {"mean", "median", "rmse", "within_11.25", "within_22.5", "within_30"}
    assert all(math.isnan(v) for v in result.values())


# --- depth ----------------------------------------------------------------------------------


def test_depth_meter_by_hand() -> None:
    gt = torch.tensor([2.0, 4.0, 0.0, 1.0]).view(1, 1, 1, 4)
    pred = torch.tensor([1.0, 4.5, 7.0, 1.0]).view(1, 1, 1, 4)  # the 7 sits on a hole
    meter = DepthMeter()
    meter.update(pred, gt)
    result = meter.compute()
    assert meter.count == 3
    assert result["rmse"] == pytest.approx(math.sqrt((1.0 + 0.25 + 0.0) / 3))
    assert result["abs_rel"] == pytest.approx((0.5 + 0.125 + 0.0) / 3)
    assert result["log_rmse"] == pytest.approx(
        math.sqrt((math.log(0.5) ** 2 + math.log(4.5 / 4) ** 2) / 3))
    assert result["delta_1.25"] == pytest.approx(100 * 2 / 3)  # ratios 2, 1.125, 1


def test_depth_delta_is_strict() -> None:
    meter = DepthMeter()
    # Ratios 1.25 (exact in binary), 1.28 and 1/1.2: only the last is below 1.25.
    meter.update(torch.tensor([[5.0, 1.28, 1.0]]), torch.tensor([[4.0, 1.0, 1.2]]))
    assert meter.compute()["delta_1.25"] == pytest.approx(100 / 3)


def test_depth_meter_replaces_non_positive_predictions_as_the_community_does() -> None:
    # eval_depth: pred[pred <= 0] = 1e-9 before rmse and log_rmse.
    meter = DepthMeter()
    meter.update(torch.tensor([[-1.0, 0.0, 1e-12, 3.0]]), torch.tensor([[2.0, 2.0, 2.0, 2.0]]))
    result = meter.compute()
    kept = [1e-9, 1e-9, 1e-12, 3.0]  # a positive prediction stays as it is, however small
    assert result["rmse"] == pytest.approx(math.sqrt(sum((p - 2) ** 2 for p in kept) / 4))
    assert result["log_rmse"] == pytest.approx(
        math.sqrt(sum(math.log(p / 2) ** 2 for p in kept) / 4))
    assert result["abs_rel"] == pytest.approx(sum(abs(p - 2) / 2 for p in kept) / 4)
    assert result["delta_1.25"] == 0.0  # none within 1.25; a negative ratio never counts


def test_depth_meter_no_valid_pixel_is_nan() -> None:
    meter = DepthMeter()
    meter.update(torch.ones(1, 1, 2, 2), torch.zeros(1, 1, 2, 2))
    assert all(math.isnan(v) for v in meter.compute().values())
    with pytest.raises(ValueError, match="shape"):
        meter.update(torch.ones(1, 1, 2, 2), torch.ones(1, 2, 2))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_meters_accept_cuda_tensors() -> None:
    pred, target = _seg_example()
    seg = SegmentationMeter(4)
    seg.update(pred.cuda(), target.cuda())
    assert seg.compute()["mIoU"] == pytest.approx(SEG_MIOU)
    sal = SaliencyMeter()
    sal.update(_sal([[0.1, 0.42, 0.62, 0.93]]).cuda(), _sal_target([[0, 1, 1, 0]]).cuda())
    assert sal.compute()["maxF"] == pytest.approx(80.0, abs=1e-6)
    normals = NormalsMeter()
    normals.update(_normals([(1, 0, 0)]).cuda(), _normals([(0, 1, 0)]).cuda())
    assert normals.compute()["mean"] == pytest.approx(90.0)
    depth = DepthMeter()
    depth.update(torch.tensor([[1.0]]).cuda(), torch.tensor([[2.0]]).cuda())
    assert depth.compute()["rmse"] == pytest.approx(1.0)
