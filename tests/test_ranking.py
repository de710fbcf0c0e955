"""The learnability checks (pebench.ranking) on hand-made rows, and the constant floor
(pebench.constant_baseline) against values computed by hand from the labels."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pebench.compare import Row, Stat
from pebench.constant_baseline import constant_primaries
from pebench.data.synthetic import SyntheticScenes
from pebench.primary import PrimaryMetric
from pebench.ranking import delta_m_figures, floors, rank

METRICS = {"seg": PrimaryMetric("mIoU", True), "normals": PrimaryMetric("mean", False)}


def row(method: str, seg: tuple[float, float], normals: tuple[float, float],
        delta_m: tuple[float, float] = (0.0, 0.5), n: int = 3) -> Row:
    metrics = {"seg": Stat(*seg, n), "normals": Stat(*normals, n)}
    return Row(method=method, setting={}, metrics=metrics, delta_m=Stat(*delta_m, n),
               params_m=None, step_ms=None, n=n)


FLOOR = {"seg": 10.0, "normals": 30.0}


def test_a_budget_that_ranks_passes_every_check() -> None:
    rows = [row("frozen", (20.0, 0.5), (25.0, 0.2), (-10.0, 0.4)),
            row("full", (30.0, 1.0), (22.0, 0.3), (5.0, 0.6)),
            row("single", (31.0, 1.0), (21.5, 0.3), (0.0, 0.0)),
            # beats frozen on seg only: allowed one spare task of two
            row("peft", (25.0, 1.0), (25.1, 0.2), (-4.0, 0.5))]
    report = rank(rows, FLOOR, METRICS, "frozen", ["full", "single"])
    assert report.held, report.failures
    # frozen over the floor: seg +10 needs > max(2·0.5, 0.05·10) = 1; normals +5 needs > 1.5
    margin = next(m for m in report.learned if m.method == "frozen" and m.task == "normals")
    assert (margin.ahead, margin.needed) == (5.0, 1.5)
    # peft against frozen on seg: +5, needs > 2 · max(1.0, 0.5) = 2
    margin = next(m for m in report.over_frozen if m.method == "peft" and m.task == "seg")
    assert (margin.ahead, margin.needed, margin.held) == (5.0, 2.0, True)
    assert report.delta_m_gaps == [6.0, 4.0, 5.0]
    assert "median 5.00, min 4.00" in delta_m_figures(report)


def test_each_failure_is_named() -> None:
    rows = [row("frozen", (20.0, 0.5), (25.0, 0.2)),
            row("full", (21.5, 1.0), (22.0, 0.3)),  # seg +1.5, needs > 2: fails
            row("peft", (19.0, 1.0), (25.5, 0.2)),  # worse on both: fails
            row("weak", (10.4, 0.1), (24.0, 0.2))]  # seg +0.4 over the floor, needs 0.5
    report = rank(rows, FLOOR, METRICS, "frozen", ["full"])
    assert not report.held
    text = "\n".join(report.failures)
    assert "not learned: weak seg: +0.40 over floor (needs > 0.50)" in text
    assert "full beats frozen on 1 of 2 tasks (needs 2)" in text
    assert "peft beats frozen on 0 of 2 tasks (needs 1)" in text


def test_one_seed_never_passes() -> None:
    rows = [row("frozen", (20.0, 0.5), (25.0, 0.2)),
            Row("full", {}, {"seg": Stat(40.0, None, 1), "normals": Stat(20.0, None, 1)},
                Stat(5.0, None, 1), None, None, 1)]
    report = rank(rows, FLOOR, METRICS, "frozen", ["full"])
    assert any("full seg" in line and "no seed spread" in line for line in report.failures)


def test_the_floor_is_the_best_of_the_untrained_runs_and_the_constant() -> None:
    untrained = [{"seg": 12.0, "normals": 40.0}, {"seg": 11.0, "normals": 35.0}]
    constant = {"seg": 9.0, "normals": 21.9}
    assert floors([*untrained, constant], METRICS) == {"seg": 12.0, "normals": 21.9}


def test_constant_floors_match_the_labels(isolated_cache: object) -> None:
    size, classes = 32, 7
    floor = constant_primaries("synthetic", ("semseg", "human_parts", "normals"), size)
    split = SyntheticScenes("val", size, ("semseg", "human_parts", "normals"))
    samples = [split[i] for i in range(len(split))]
    for task in ("semseg", "human_parts"):
        labels = np.concatenate([s[task].numpy().ravel() for s in samples])
        valid = labels[labels != 255]
        # class k everywhere: IoU_k = n_k / n_valid, every other class 0, averaged over all
        best = max(np.count_nonzero(valid == k) for k in range(classes)) / valid.size
        assert floor[task] == pytest.approx(100.0 * best / classes, rel=1e-9)
    normals = np.concatenate([s["normals"].numpy().reshape(3, -1) for s in samples], axis=1)
    normals = normals[:, np.any(normals != 0, axis=0)].astype(np.float64)
    mean = normals.mean(axis=1)
    mean /= np.linalg.norm(mean)
    cosines = np.clip(mean @ (normals / np.linalg.norm(normals, axis=0)), -1.0, 1.0)
    assert floor["normals"] == pytest.approx(math.degrees(1) * np.arccos(cosines).mean(),
                                             rel=1e-4)
