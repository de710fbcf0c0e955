"""Does a budget rank the methods? The learnability checks of a benchmark setting.

Given the compared runs of one setting (every method over the same seeds), the untrained
model's scores and the best constant prediction's (``pebench.constant_baseline``):

1. **every task is learned**: each method's mean beats the better of the two floors on every
   task by more than ``sigmas`` of its seed standard deviation and by at least
   ``min_relative`` of the floor (a clear margin even where the seeds agree closely);
2. **adapting the encoder pays**: the full-fine-tuning baseline and the Δm reference (the
   single-task models) beat the frozen-backbone baseline on every task, and every other
   method on all but ``spare_tasks`` of them, each by more than ``sigmas`` of the larger of
   the two seed standard deviations;
3. **Δm separates the methods**: stated as figures (each row's Δm seed std against the gaps
   between the rows' mean Δm), not judged.

A method with one seed has no standard deviation: every check of it fails, since a margin
cannot be told from noise.
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from pebench.compare import Row, Stat
from pebench.primary import PrimaryMetric


@dataclass(frozen=True)
class Margin:
    """How far ``method`` is ahead of ``against`` on ``task`` (in the metric's units,
    positive when better) and how far it must be (``needed``; None: no seed spread)."""

    method: str
    task: str
    against: str
    ahead: float
    needed: float | None

    @property
    def held(self) -> bool:
        return self.needed is not None and self.ahead > self.needed

    def text(self) -> str:
        need = "no seed spread" if self.needed is None else f"needs > {self.needed:.2f}"
        return f"{self.method} {self.task}: {self.ahead:+.2f} over {self.against} ({need})"


@dataclass(frozen=True)
class RankingReport:
    learned: list[Margin]
    over_frozen: list[Margin]
    failures: list[str]  # one line per failed requirement
    delta_m_stds: dict[str, float]  # row -> Δm seed std
    delta_m_gaps: list[float]  # gaps between consecutive mean Δm, ascending order of Δm

    @property
    def held(self) -> bool:
        return not self.failures


def ahead(value: float, other: float, higher_is_better: bool) -> float:
    """How much better ``value`` is than ``other`` (negative when worse)."""
    return value - other if higher_is_better else other - value


def floors(scores: Sequence[dict[str, float]],
           metrics: dict[str, PrimaryMetric]) -> dict[str, float]:
    """Per task, the best of ``scores`` that score it (the untrained runs and the constant
    predictions): the strictest floor."""
    best = {}
    for task, metric in metrics.items():
        pick = max if metric.higher_is_better else min
        best[task] = pick(score[task] for score in scores if task in score)
    return best


def rank(rows: Sequence[Row], floor: dict[str, float], metrics: dict[str, PrimaryMetric],
         frozen: str, must_beat_everywhere: Sequence[str], sigmas: float = 2.0,
         spare_tasks: int = 1, min_relative: float = 0.05) -> RankingReport:
    """The checks of the module doc over ``rows`` (one setting), ``frozen`` naming the
    frozen-backbone row and ``must_beat_everywhere`` the rows that must beat it on every
    task."""
    by_method = {row.method: row for row in rows}
    if frozen not in by_method:
        raise ValueError(f"no runs of the frozen-backbone method '{frozen}' in this setting")
    tasks = list(metrics)
    learned = [_margin(row, task, "floor", floor[task], None, metrics[task], sigmas,
                       min_relative * abs(floor[task]))
               for row in rows for task in tasks]
    base = by_method[frozen]
    over_frozen = [_margin(row, task, frozen, _mean(base, task), _std(base, task),
                           metrics[task], sigmas)
                   for row in rows if row.method != frozen for task in tasks]
    failures = [f"not learned: {m.text()}" for m in learned if not m.held]
    for row in rows:
        if row.method == frozen:
            continue
        mine = [m for m in over_frozen if m.method == row.method]
        lost = [m for m in mine if not m.held]
        allowed = 0 if row.method in must_beat_everywhere else spare_tasks
        if len(lost) > allowed:
            failures.append(f"{row.method} beats {frozen} on {len(mine) - len(lost)} of "
                            f"{len(mine)} tasks (needs {len(mine) - allowed}): "
                            + "; ".join(m.text() for m in lost))
    stds = {row.method: row.delta_m.std for row in rows
            if row.delta_m is not None and row.delta_m.std is not None}
    means = sorted(row.delta_m.mean for row in rows if row.delta_m is not None)
    gaps = [b - a for a, b in itertools.pairwise(means)]
    return RankingReport(learned, over_frozen, failures, stds, gaps)


def delta_m_figures(report: RankingReport) -> str:
    """The Δm spread against the gaps between methods, in one line."""
    if not report.delta_m_stds or not report.delta_m_gaps:
        return "Δm: not enough rows with Δm and seed spread to compare"
    stds = list(report.delta_m_stds.values())
    return (f"Δm seed std: median {statistics.median(stds):.2f}, max {max(stds):.2f} "
            f"({max(report.delta_m_stds, key=report.delta_m_stds.__getitem__)}); gaps between "
            f"consecutive methods' mean Δm: median {statistics.median(report.delta_m_gaps):.2f}, "
            f"min {min(report.delta_m_gaps):.2f}")


def _margin(row: Row, task: str, against: str, other: float, other_std: float | None,
            metric: PrimaryMetric, sigmas: float, at_least: float = 0.0) -> Margin:
    std = _std(row, task)
    spread = None if std is None else max(std, other_std or 0.0)
    return Margin(row.method, task, against, ahead(_mean(row, task), other,
                                                   metric.higher_is_better),
                  None if spread is None else max(sigmas * spread, at_least))


def _stat(row: Row, task: str) -> Stat:
    stat = row.metrics.get(task)
    if stat is None:
        raise ValueError(f"{row.method} has no {task} metric")
    return stat


def _mean(row: Row, task: str) -> float:
    return _stat(row, task).mean


def _std(row: Row, task: str) -> float | None:
    return _stat(row, task).std
