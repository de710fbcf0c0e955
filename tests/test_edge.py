"""The edge task: weighted BCE and the tolerance-matched F-measure, on hand-computed cases."""

from __future__ import annotations

import math

import pytest
import torch

from pebench.data.infos import NYUD, PASCAL_CONTEXT
from pebench.errors import PebenchError
from pebench.task import get_task
from tasks.edge import EdgeMeter, disk_max, weighted_edge_bce


def test_weighted_bce_by_hand() -> None:
    # logits 0: every pixel's BCE is ln 2; weights 0.95 (edge) and 0.05 (not), ignore left out
    target = torch.tensor([[[1, 0], [0, 0], [255, 255]]])
    logits = torch.zeros(1, 1, 3, 2, dtype=torch.float64, requires_grad=True)
    loss = weighted_edge_bce(logits, target)  # float64: a closed form to ~1e-16 on any CPU
    assert loss.item() == pytest.approx((0.95 + 3 * 0.05) / 4 * math.log(2), rel=1e-12)
    loss.backward()
    assert logits.grad is not None and (logits.grad[0, 0, 2] == 0).all()


def test_weighted_bce_of_a_confident_prediction() -> None:
    target = torch.tensor([[[1, 0]]])
    logits = torch.tensor([[[[2.0, -1.0]]]], dtype=torch.float64)
    positive = 0.95 * math.log(1 + math.exp(-2.0))
    negative = 0.05 * math.log(1 + math.exp(-1.0))
    assert weighted_edge_bce(logits, target).item() == pytest.approx((positive + negative) / 2,
                                                                     rel=1e-12)


def test_all_ignored_loss_is_zero_in_the_graph() -> None:
    logits = torch.randn(2, 1, 4, 4, requires_grad=True)
    loss = weighted_edge_bce(logits, torch.full((2, 4, 4), 255))
    assert loss.item() == 0.0
    loss.backward()


def test_disk_max_covers_exactly_the_euclidean_disk() -> None:
    values = torch.zeros(1, 1, 11, 11)
    values[0, 0, 5, 5] = 1.0
    covered = disk_max(values, 2.0)[0, 0]
    yy, xx = torch.meshgrid(torch.arange(11), torch.arange(11), indexing="ij")
    expected = ((yy - 5) ** 2 + (xx - 5) ** 2 <= 4).float()
    assert torch.equal(covered, expected)
    assert int(covered.sum()) == 13


def _meter_with_radius(radius: float, size: int = 10) -> EdgeMeter:
    return EdgeMeter(tolerance=radius / math.hypot(size, size))


def test_f_measure_by_hand() -> None:
    """Ground truth: column 4. Prediction: 0.9 on column 5 (one pixel off, within r = 1) and
    0.8 on column 8 (far). For t ≤ 0.8: P = 10/20, R = 10/10, F = 2/3. For 0.8 < t ≤ 0.9:
    P = R = 1, F = 1, first reached at the threshold 0.81."""
    target = torch.zeros(1, 10, 10, dtype=torch.int64)
    target[0, :, 4] = 1
    prediction = torch.zeros(1, 1, 10, 10)
    prediction[0, 0, :, 5] = 0.9
    prediction[0, 0, :, 8] = 0.8
    meter = _meter_with_radius(1.0)
    meter.update(prediction, target)
    result = meter.compute()
    assert result["odsF_approx"] == pytest.approx(100.0)
    assert result["threshold"] == pytest.approx(0.81)
    assert result["precision"] == pytest.approx(100.0) and result["recall"] == pytest.approx(100.0)

    low = EdgeMeter(meter.tolerance, thresholds=torch.tensor([0.5]))
    low.update(prediction, target)
    assert low.compute()["odsF_approx"] == pytest.approx(100 * 2 / 3)
    assert low.compute()["precision"] == pytest.approx(50.0)


def test_matching_uses_euclidean_distance() -> None:
    """A prediction one pixel off diagonally is √2 away: no match within 1, a match within 1.5."""
    target = torch.zeros(1, 10, 10, dtype=torch.int64)
    target[0, 3, 3] = 1
    prediction = torch.zeros(1, 10, 10)
    prediction[0, 4, 4] = 1.0
    for radius, expected in ((1.0, 0.0), (1.5, 100.0)):
        meter = _meter_with_radius(radius)
        meter.update(prediction, target)
        assert meter.compute()["odsF_approx"] == pytest.approx(expected), radius


def test_ignored_pixels_count_for_nothing_and_counts_pool_over_batches() -> None:
    target = torch.zeros(1, 10, 10, dtype=torch.int64)
    target[0, :, 2] = 1
    target[0, :, 7:] = 255
    prediction = torch.zeros(1, 10, 10)
    prediction[0, :, 2] = 1.0
    prediction[0, :, 8] = 1.0  # in the ignore region: not a false positive
    meter = _meter_with_radius(1.0)
    meter.update(prediction, target)
    assert meter.compute()["odsF_approx"] == pytest.approx(100.0)
    missed = torch.zeros(1, 10, 10, dtype=torch.int64)
    missed[0, :, 5] = 1  # a second image whose edge is not predicted at all
    meter.update(torch.zeros(1, 10, 10), missed)
    # pooled: P = 10/10, R = 10/20 -> F = 2/3
    assert meter.compute()["odsF_approx"] == pytest.approx(100 * 2 / 3)


def test_meter_refuses_bad_input_and_reports_nan_without_edges() -> None:
    meter = EdgeMeter(0.01)
    assert math.isnan(meter.compute()["odsF_approx"])
    with pytest.raises(ValueError, match="probabilities"):
        meter.update(torch.full((1, 4, 4), 2.0), torch.zeros(1, 4, 4, dtype=torch.int64))
    with pytest.raises(ValueError, match="shape"):
        meter.update(torch.zeros(1, 4, 5), torch.zeros(1, 4, 4, dtype=torch.int64))


def test_edge_task_takes_its_tolerance_from_the_dataset() -> None:
    task = get_task("edge")
    assert task.loss_weight == 50.0 and task.primary_metric == "odsF_approx"
    assert task.out_channels(NYUD) == 1
    assert task.meter(PASCAL_CONTEXT).tolerance == 0.0075
    assert task.meter(NYUD).tolerance == 0.011
    from pebench.data.synthetic import SyntheticSource

    with pytest.raises(PebenchError, match="no edge matching tolerance"):
        task.meter(SyntheticSource.info)
