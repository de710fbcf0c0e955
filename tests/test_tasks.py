"""The built-in tasks: registry entries, losses computed by hand, predict, meter wiring."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from pebench.data.base import DatasetInfo
from pebench.errors import PebenchError
from pebench.task import TASKS, Task, get_task
from tasks.depth import DepthMeter
from tasks.normals import NormalsMeter
from tasks.saliency import SaliencyMeter, balanced_bce_with_logits
from tasks.semseg import SegmentationMeter

X = 255  # the ignore index
ALL_TASKS = ("semseg", "human_parts", "saliency", "normals", "depth")
INFO = DatasetInfo(name="toy", tasks=ALL_TASKS, default_tasks=ALL_TASKS,
                   num_classes={"semseg": 21, "human_parts": 7}, needs_root=False)


def _bce(logit: float, label: int) -> float:
    """Binary cross-entropy of one logit, written out by hand."""
    p = 1 / (1 + math.exp(-logit))
    return -math.log(p) if label == 1 else -math.log(1 - p)


# --- registry -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "weight", "primary", "higher", "channels", "meter_type"),
    [
        ("semseg", 1.0, "mIoU", True, 21, SegmentationMeter),
        ("human_parts", 2.0, "mIoU", True, 7, SegmentationMeter),
        ("saliency", 5.0, "mIoU", True, 1, SaliencyMeter),
        ("normals", 10.0, "mean", False, 3, NormalsMeter),
        ("depth", 1.0, "rmse", False, 1, DepthMeter),
    ],
)
def test_registered_task_attributes(name: str, weight: float, primary: str, higher: bool,
                                    channels: int, meter_type: type) -> None:
    assert name in TASKS.names()
    task = get_task(name)
    assert isinstance(task, Task)
    assert task.name == name
    assert task.loss_weight == weight
    assert task.primary_metric == primary
    assert task.higher_is_better is higher
    assert task.description and "\n" not in task.description
    assert task.out_channels(INFO) == channels
    assert isinstance(task.meter(INFO), meter_type)


def test_human_parts_skip_images_without_parts_and_semseg_does_not() -> None:
    background = torch.zeros(1, 2, 2, dtype=torch.long)
    for name, counted in (("human_parts", 0), ("semseg", 4)):
        meter = get_task(name).meter(INFO)
        meter.update(torch.ones_like(background), background)
        assert int(meter.confusion.sum()) == counted


def test_registry_lists_all_five() -> None:
    assert set(ALL_TASKS) <= set(TASKS.names())


def test_segmentation_tasks_read_their_own_class_count() -> None:
    info = DatasetInfo(name="nyud", tasks=("semseg",), default_tasks=("semseg",),
                       num_classes={"semseg": 40})
    assert get_task("semseg").out_channels(info) == 40
    assert get_task("semseg").meter(info).num_classes == 40
    with pytest.raises(PebenchError, match="human_parts"):
        get_task("human_parts").out_channels(info)


# --- semseg / human parts -------------------------------------------------------------------


def test_semseg_loss_by_hand_ignores_255() -> None:
    # Pixel 1: logits (0, ln 3), target 1 -> -log(3/4). Pixel 2: (0, 0), target 0 -> log 2.
    # Pixel 3 is ignored despite an enormous wrong logit.
    # float64 throughout (here and in the other by-hand losses): the loss is compared with a
    # closed form, which float64 meets to ~1e-16 on any CPU; float32 kernels differ by ulps.
    output = torch.tensor([[0.0, 0.0, 0.0], [math.log(3), 0.0, 1e4]],
                          dtype=torch.float64).view(1, 2, 1, 3)
    target = torch.tensor([[[1, 0, X]]])
    loss = get_task("semseg").loss(output, target)
    assert loss.item() == pytest.approx((math.log(4 / 3) + math.log(2)) / 2, rel=1e-12)
    reference = F.cross_entropy(output, target, ignore_index=X)
    assert loss.item() == pytest.approx(reference.item(), rel=1e-12)


def test_semseg_predict_is_argmax() -> None:
    output = torch.tensor([[1.0, 5.0], [2.0, -1.0], [0.0, 0.0]]).view(1, 3, 1, 2)
    prediction = get_task("semseg").predict(output)
    assert prediction.dtype == torch.int64
    assert prediction.tolist() == [[[1, 0]]]


def test_human_parts_all_ignored_batch_is_zero_connected_and_skipped() -> None:
    task = get_task("human_parts")
    output = torch.randn(2, 7, 4, 4, requires_grad=True)
    empty = torch.full((2, 4, 4), X)
    loss = task.loss(output, empty)
    assert torch.isfinite(loss)
    assert loss.item() == 0.0
    assert loss.requires_grad
    (task.loss_weight * loss).backward()
    assert output.grad is not None
    assert torch.equal(output.grad, torch.zeros_like(output))

    meter = task.meter(INFO)
    target = torch.tensor([[[0, 1], [2, X]]])
    meter.update(torch.tensor([[[0, 1], [1, 6]]]), target)
    before = meter.compute()
    meter.update(task.predict(output.detach()), empty)
    assert meter.compute() == before
    # Class 0: 1/1, class 1: TP 1, FP 1 -> 1/2, class 2: FN 1 -> 0; 3..6 unseen: 0 each.
    assert before["mIoU"] == pytest.approx(100 * (1 + 0.5 + 0) / 7)
    assert before["mIoU_present"] == pytest.approx(100 * (1 + 0.5 + 0) / 3)


# --- saliency -------------------------------------------------------------------------------


def test_balanced_bce_by_hand() -> None:
    # Four valid pixels, 1 positive and 3 negatives -> w = 3/4; two ignored pixels carry
    # extreme logits that must not matter.
    logits = torch.tensor([0.0, 2.0, -1.0, 1.0, 50.0, -50.0],
                          dtype=torch.float64).view(1, 1, 1, 6)
    target = torch.tensor([1, 0, 0, 0, X, X]).view(1, 1, 6)
    pos = _bce(0.0, 1)
    neg = _bce(2.0, 0) + _bce(-1.0, 0) + _bce(1.0, 0)
    expected = (3 / 4 * pos + 1 / 4 * neg) / 4
    loss = get_task("saliency").loss(logits, target)
    assert loss.item() == pytest.approx(expected, rel=1e-12)
    # The weights really are the negative fraction (swapping them gives another number).
    assert loss.item() != pytest.approx((1 / 4 * pos + 3 / 4 * neg) / 4, rel=1e-3)


def test_balanced_bce_weighting_follows_negative_fraction() -> None:
    logits = torch.tensor([0.5, -0.5, 1.5, -2.0], dtype=torch.float64).view(1, 1, 1, 4)
    target = torch.tensor([1, 1, 1, 0]).view(1, 1, 4)  # 3 positives, 1 negative -> w = 1/4
    pos = _bce(0.5, 1) + _bce(-0.5, 1) + _bce(1.5, 1)
    neg = _bce(-2.0, 0)
    expected = (1 / 4 * pos + 3 / 4 * neg) / 4
    assert balanced_bce_with_logits(logits, target).item() == pytest.approx(expected, rel=1e-12)
    # The channel dimension is optional.
    assert balanced_bce_with_logits(logits[:, 0], target).item() == pytest.approx(expected,
                                                                                   rel=1e-12)


def test_balanced_bce_is_stable_and_empty_is_zero() -> None:
    logits = torch.tensor([1e4, -1e4]).view(1, 1, 1, 2)
    target = torch.tensor([0, 1]).view(1, 1, 2)  # both confidently wrong; w = 1/2
    loss = balanced_bce_with_logits(logits, target)
    assert torch.isfinite(loss)
    assert loss.item() == pytest.approx((0.5 * 1e4 + 0.5 * 1e4) / 2, rel=1e-6)

    output = torch.randn(2, 1, 3, 3, requires_grad=True)
    empty = get_task("saliency").loss(output, torch.full((2, 3, 3), X))
    assert empty.item() == 0.0
    empty.backward()
    assert output.grad is not None and torch.equal(output.grad, torch.zeros_like(output))


def test_saliency_predict_is_one_sigmoid() -> None:
    task = get_task("saliency")
    output = torch.tensor([0.0, 2.0, -3.0]).view(1, 1, 1, 3)
    probabilities = task.predict(output)
    assert probabilities.shape == output.shape
    assert probabilities.flatten().tolist() == pytest.approx(
        [0.5, 1 / (1 + math.exp(-2)), 1 / (1 + math.exp(3))])
    meter = task.meter(INFO)
    with pytest.raises(ValueError):  # raw logits are caught
        meter.update(output, torch.tensor([[[0, 1, 0]]]))


# --- normals --------------------------------------------------------------------------------


def test_normals_loss_by_hand_and_scale_invariant() -> None:
    task = get_task("normals")
    # Pixel 1: (3, 0, 0) -> (1, 0, 0) vs (0, 1, 0): |diff| sums to 2. Pixel 2: exact.
    # Pixel 3: zero target -> ignored. Mean over 2 valid pixels × 3 components = 2 / 6.
    output = torch.tensor([[3.0, 0.0, -1.0], [0.0, 0.0, 0.0], [0.0, 2.0, 5.0]],
                          dtype=torch.float64).view(1, 3, 1, 3)
    target = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]],
                          dtype=torch.float64).view(1, 3, 1, 3)
    assert task.loss(output, target).item() == pytest.approx(1 / 3, rel=1e-12)
    assert task.loss(output * 0.01, target).item() == pytest.approx(1 / 3, rel=1e-12)


def test_normals_loss_empty_is_zero_and_predict_is_unit() -> None:
    task = get_task("normals")
    output = torch.randn(2, 3, 4, 4, requires_grad=True)
    loss = task.loss(output, torch.zeros(2, 3, 4, 4))
    assert loss.item() == 0.0
    loss.backward()
    assert output.grad is not None and torch.equal(output.grad, torch.zeros_like(output))
    unit = task.predict(output.detach() * 4)
    assert torch.allclose(unit.norm(dim=1), torch.ones(2, 4, 4), atol=1e-6)
    with pytest.raises(ValueError, match="does not match"):
        task.loss(output, torch.zeros(2, 3, 4, 5))


# --- depth ----------------------------------------------------------------------------------


def test_depth_loss_by_hand_ignores_zeros() -> None:
    task = get_task("depth")
    output = torch.tensor([1.0, 4.5, 7.0, 1.0]).view(1, 1, 1, 4)
    target = torch.tensor([2.0, 4.0, 0.0, 1.0]).view(1, 1, 1, 4)
    assert task.loss(output, target).item() == pytest.approx((1.0 + 0.5 + 0.0) / 3)
    assert task.predict(output) is output

    empty_output = torch.randn(1, 1, 2, 2, requires_grad=True)
    empty = task.loss(empty_output, torch.zeros(1, 1, 2, 2))
    assert empty.item() == 0.0
    empty.backward()
    assert empty_output.grad is not None
    with pytest.raises(ValueError, match="does not match"):
        task.loss(output, target[:, 0])


# --- every task end to end ------------------------------------------------------------------


def _random_target(name: str, gen: torch.Generator) -> torch.Tensor:
    shape = (2, 6, 5)
    if name in ("semseg", "human_parts"):
        target = torch.randint(0, INFO.num_classes[name], shape, generator=gen)
    elif name == "saliency":
        target = torch.randint(0, 2, shape, generator=gen)
    elif name == "normals":
        return F.normalize(torch.randn(2, 3, 6, 5, generator=gen), dim=1)
    else:
        return torch.rand(2, 1, 6, 5, generator=gen) + 0.5
    target[:, 0] = X
    return target


@pytest.mark.parametrize("name", ALL_TASKS)
def test_loss_predict_meter_round_trip(name: str) -> None:
    gen = torch.Generator().manual_seed(3)
    task = get_task(name)
    output = torch.randn(2, task.out_channels(INFO), 6, 5, generator=gen, requires_grad=True)
    target = _random_target(name, gen)
    loss = task.loss(output, target)
    assert loss.dim() == 0 and torch.isfinite(loss) and loss.item() > 0
    loss.backward()
    assert output.grad is not None and bool(output.grad.abs().sum() > 0)
    meter = task.meter(INFO)
    meter.update(task.predict(output.detach()), target)
    result = meter.compute()
    assert task.primary_metric in result
    assert all(isinstance(v, float) and math.isfinite(v) for v in result.values())
