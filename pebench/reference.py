"""Where Δm's reference comes from, for a run as it finishes and for ``pebench compare``.

Δm is only meaningful against single-task models trained in the same setting, so the
definition of "the same setting" lives here once (``is_reference_for``), as does the one
fallback to published numbers (``published_reference``); ``find_reference`` chains them and
both the run-time lookup and the comparison tables use it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pebench import published
from pebench.primary import delta_m
from pebench.results import RunRecord
from pebench.runs import scan_records


@dataclass(frozen=True)
class ReferenceSetting:
    """What a Δm reference must share with the runs it is the reference for."""

    dataset: str
    backbone: str
    tasks: tuple[str, ...]
    img_size: int
    steps: int
    batch_size: int | None
    weights_sha256: str | None
    eval_resolution: str = "input"

    @classmethod
    def of(cls, record: RunRecord) -> ReferenceSetting:
        return cls(dataset=record.dataset, backbone=record.backbone, tasks=tuple(record.tasks),
                   img_size=record.img_size, steps=record.steps,
                   batch_size=record.config.get("batch_size"),
                   weights_sha256=record.weights.get("sha256"),
                   eval_resolution=record.eval_resolution)

    def describe(self) -> str:
        weights = (self.weights_sha256 or "none")[:12]
        resolution = ("" if self.eval_resolution == "input"
                      else f", evaluated at the {self.eval_resolution} resolution")
        return (f"{self.dataset}, {self.backbone}, {self.img_size} px, {self.steps} steps, "
                f"batch {self.batch_size}, weights {weights}{resolution}")


@dataclass(frozen=True)
class Reference:
    """Primary metrics to compute Δm against, and where they come from."""

    kind: Literal["reference runs", "published"]
    values: dict[str, float]
    run_ids: tuple[str, ...] = ()
    label: str = ""


def is_reference_for(candidate: RunRecord, setting: ReferenceSetting) -> bool:
    """The one definition of "a reference run of the same setting": a completed run of the
    Δm-reference method (the single-task models), same dataset, backbone, input size, step
    budget, batch size, backbone weights and evaluation resolution, and a finite primary
    metric for every task of the setting (its tasks may be a superset)."""
    own = ReferenceSetting.of(candidate)
    return (candidate.status == "completed" and candidate.is_delta_m_reference()
            and dataclasses.replace(own, tasks=setting.tasks) == setting
            and all(_finite(candidate.primary.get(task)) for task in setting.tasks))


def published_reference(setting: ReferenceSetting) -> Reference | None:
    """The published reference row's numbers, when the setting is the published table's
    (dataset, backbone, input size, evaluation resolution) and its tasks are among the
    table's."""
    if not published.in_published_setting(setting.dataset, setting.backbone, setting.img_size,
                                          setting.tasks, setting.eval_resolution):
        return None
    values = published.published_reference_values()
    return Reference("published", {t: values[t] for t in setting.tasks},
                     label=published.published_table().reference_label)


def find_reference(setting: ReferenceSetting,
                   candidates: Iterable[RunRecord]) -> Reference | None:
    """The mean primary metrics of the matching Δm-reference runs among ``candidates``; else the
    published numbers for the published setting; else None."""
    matches = [c for c in candidates if is_reference_for(c, setting)]
    if matches:
        values = {task: sum(float(m.primary[task]) for m in matches) / len(matches)
                  for task in setting.tasks}
        runs = "run" if len(matches) == 1 else "runs"
        methods = "/".join(sorted({m.method for m in matches}))
        label = f"mean of {len(matches)} {methods} {runs} ({setting.describe()})"
        return Reference("reference runs", values, tuple(m.run_id for m in matches), label)
    return published_reference(setting)


def delta_m_against(record: RunRecord, reference: Reference) -> float | None:
    """Δm of one run's primary metrics; None when one of them could not be computed."""
    values = {task: record.primary.get(task) for task in reference.values}
    if not all(_finite(v) for v in values.values()):
        return None
    metrics = record.primary_metrics()
    return delta_m({t: float(v) for t, v in values.items() if v is not None}, reference.values,
                   {task: metrics[task].higher_is_better for task in reference.values})


@dataclass(frozen=True)
class DeltaM:
    value: float
    reference: Reference


def finished_run_delta_m(record: RunRecord, results_dir: Path) -> DeltaM | None:
    """Δm of a run that has just finished, against the other records in its output directory
    (or the published numbers), to show, not to store: a record holds only its own run's
    facts, and ``pebench compare`` recomputes Δm from whatever runs exist then. None when
    there is no reference or a metric could not be computed."""
    candidates = [c for c in scan_records(results_dir).records if c.run_id != record.run_id]
    reference = find_reference(ReferenceSetting.of(record), candidates)
    if reference is None:
        return None
    value = delta_m_against(record, reference)
    return None if value is None else DeltaM(value, reference)


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) \
        and math.isfinite(value)
