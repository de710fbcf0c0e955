"""The comparison behind a paper's table: one row per method and setting, seeds aggregated.

Rows are built from the run records of a results directory (``pebench.runs``). Seeds of the
same setting are summarised as mean ± sample standard deviation; Δm is recomputed here for
every run against the reference ``pebench.reference`` finds for it (the records' own Δm
depends on which runs existed when each finished, so it is not reused). Formatting lives in
``pebench.report`` and the figure in ``pebench.plot``; this module only computes.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from pebench import published
from pebench.errors import PebenchError, unknown_name
from pebench.primary import PrimaryMetric
from pebench.reference import (
    Reference,
    ReferenceSetting,
    delta_m_against,
    find_reference,
)
from pebench.runs import METHOD_PREFIX, PRIMARY_PREFIX, RunFrame, Skipped, load_frame

# Runs differing in these are different settings: always grouped apart, shown when they differ.
SETTING_COLUMNS = ("dataset", "backbone", "tasks", "img_size", "steps", "precision",
                   "compile", "eval_resolution")
# Runs differing in these are averaged together unless --group-by splits them, with a note.
MIXING_COLUMNS = ("batch_size", "lr", "decoder_lr", "weight_decay", "warmup_fraction",
                  "clip_grad_norm", "weights_sha256", "epochs")


@dataclass(frozen=True)
class Stat:
    """Mean and sample standard deviation (ddof=1) of n values; std is None for one value."""

    mean: float
    std: float | None
    n: int


def summarise(values: Sequence[float | None]) -> Stat | None:
    """Stat of the finite values; None when there are none."""
    finite = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return None
    std = statistics.stdev(finite) if len(finite) > 1 else None
    return Stat(statistics.fmean(finite), std, len(finite))


@dataclass
class Row:
    method: str
    setting: dict[str, Any]
    metrics: dict[str, Stat | None]
    delta_m: Stat | None
    params_m: float | None
    step_ms: Stat | None
    n: int | None
    reference: str | None = None  # the Reference label this row's Δm is against
    source: Literal["ours", "published"] = "ours"
    run_ids: list[str] = field(default_factory=list)
    delta_m_recomputed: float | None = None  # published rows: Δm recomputed from the metrics
    consistent: bool | None = None  # published rows: printed Δm == recomputed Δm
    is_reference: bool = False  # the runs of the Δm-reference method (single-task models)


@dataclass(frozen=True)
class FailedRun:
    run_id: str
    method: str
    status: str
    error: str


@dataclass
class Comparison:
    rows: list[Row]
    tasks: list[str]  # task columns, in order
    primary_metrics: dict[str, PrimaryMetric]  # of every task column
    group_columns: list[str]  # every column rows are grouped by (besides method)
    shown_columns: list[str]  # the group columns worth showing: they differ, or were asked for
    references: list[str]  # labels of the Δm references used, in order of first use
    notes: list[str]
    failed: list[FailedRun]
    skipped: list[Skipped]
    directory: Path
    with_published: bool = False

    @property
    def ours(self) -> list[Row]:
        return [row for row in self.rows if row.source == "ours"]


def compare(directory: Path, group_by: Sequence[str] = (),
            with_published: bool = False) -> Comparison:
    """Group the completed runs in ``directory`` by method and setting and summarise them;
    with ``with_published`` the published rows are appended (``source == "published"``)."""
    frame = load_frame(directory)
    group_columns = _group_columns(frame, group_by)
    references, delta_ms = _delta_ms(frame)
    completed = frame.completed.copy()
    completed["_delta_m"] = completed["run_id"].map(delta_ms)
    completed["_reference"] = completed["run_id"].map(references)
    groups = []
    for key, group in completed.groupby(["method", *group_columns], dropna=False, sort=False):
        setting = {c: _plain(v) for c, v in zip(group_columns, key[1:], strict=True)}
        groups.append((_row(str(key[0]), setting, group, frame), group))
    groups.sort(key=lambda pair: _order(pair[0]))
    rows = [row for row, _ in groups]
    notes = [note for row, group in groups
             for note in _row_notes(row, group, group_columns, frame.directory)]
    tasks = frame.tasks
    primary_metrics = frame.primary_metrics()
    shown = [c for c in group_columns
             if c in group_by or len(_distinct_texts(completed[c])) > 1]
    if with_published:
        rows.extend(_published_rows())
        table = published.published_table()
        tasks += [t for t in table.tasks if t not in tasks]
        primary_metrics = {**table.primary_metrics, **primary_metrics}
    used = list(dict.fromkeys(r.reference for r in rows if r.reference is not None))
    failed = [FailedRun(r.run_id, r.method, r.status,
                        r.error if isinstance(r.error, str) and r.error else "(no error recorded)")
              for r in frame.failed.itertuples()]
    return Comparison(rows=rows, tasks=tasks, primary_metrics=primary_metrics,
                      group_columns=group_columns, shown_columns=shown,
                      references=used, notes=notes, failed=failed, skipped=frame.skipped,
                      directory=frame.directory, with_published=with_published)


def _group_columns(frame: RunFrame, group_by: Sequence[str]) -> list[str]:
    valid = frame.setting_columns()
    for name in group_by:
        if name not in valid and name != "method":
            raise unknown_name("--group-by column", name, valid,
                               hint=f"Method hyperparameters are '{METHOD_PREFIX}<name>'.")
    extra = [c for c in group_by if c not in SETTING_COLUMNS and c != "method"]
    return [*SETTING_COLUMNS, *dict.fromkeys(extra)]


def _delta_ms(frame: RunFrame) -> tuple[dict[str, str | None], dict[str, float | None]]:
    """Each completed run's Δm and the label of its reference (None where there is none).

    The candidates are every completed record, so a single-task run is part of its own
    reference and the single-task row's Δm is 0 on average.
    """
    candidates = [frame.records[r] for r in frame.completed["run_id"]]
    found: dict[ReferenceSetting, Reference | None] = {}
    labels: dict[str, str | None] = {}
    values: dict[str, float | None] = {}
    for record in candidates:
        setting = ReferenceSetting.of(record)
        if setting not in found:
            found[setting] = find_reference(setting, candidates)
        reference = found[setting]
        if reference is None:
            labels[record.run_id], values[record.run_id] = None, None
            continue
        labels[record.run_id] = reference.label
        values[record.run_id] = delta_m_against(record, reference)
    return labels, values


def _row(method: str, setting: dict[str, Any], group: pd.DataFrame, frame: RunFrame) -> Row:
    tasks = [t for t in frame.tasks if group[PRIMARY_PREFIX + t].notna().any()]
    metrics = {t: summarise(group[PRIMARY_PREFIX + t].tolist()) for t in tasks}
    params = group["params_trainable"].dropna()
    reference_labels = group["_reference"].dropna().unique().tolist()
    return Row(method=method, setting=setting, metrics=metrics,
               delta_m=summarise(group["_delta_m"].tolist()),
               params_m=float(params.mean()) / 1e6 if len(params) else None,
               step_ms=summarise(group["step_ms"].tolist()), n=len(group),
               reference=reference_labels[0] if reference_labels else None,
               run_ids=group["run_id"].tolist(),
               is_reference=frame.records[group["run_id"].iloc[0]].is_delta_m_reference())


def describe_setting(setting: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in setting.items())


def _row_notes(row: Row, group: pd.DataFrame, group_columns: list[str],
               directory: Path) -> list[str]:
    """Why a row's Δm is missing or partial, and what it averages that it perhaps should not."""
    where = f"{row.method} ({describe_setting(row.setting)})"
    notes = []
    if row.delta_m is None and group["_reference"].isna().all():
        notes.append(f"Δm omitted for {where}: no completed Δm-reference run of the same "
                     f"setting in {directory}, and not the published setting "
                     f"({_published_setting_text()}).")
    elif row.delta_m is None:
        notes.append(f"Δm omitted for {where}: a primary metric could not be computed.")
    elif row.delta_m.n < len(group):
        notes.append(f"Δm of {where} averages {row.delta_m.n} of its {len(group)} runs (the "
                     "others have no reference or a missing metric).")
    seeds = group["seed"].tolist()
    if len(set(seeds)) < len(seeds):
        notes.append(f"{where} averages {len(seeds)} runs of only {len(set(seeds))} distinct "
                     "seed(s): repeated seeds add no independent evidence; remove the copies.")
    if group["_reference"].dropna().nunique() > 1:
        notes.append(f"the runs of {where} have different Δm references (different batch "
                     "sizes or weights); split them with --group-by.")
    mixing = [c for c in MIXING_COLUMNS if c in group]
    mixing += [c for c in group.columns if c.startswith(METHOD_PREFIX)]
    for column in mixing:
        if column in group_columns:
            continue
        values = _distinct_texts(group[column])
        if len(values) > 1:
            notes.append(f"{where} averages runs with different {column} "
                         f"({', '.join(values)}); split them with --group-by {column}.")
    return notes


def _distinct_texts(column: pd.Series) -> list[str]:
    """The column's distinct values as text, a missing value as "none", in order of first
    appearance. Not ``astype(str)``: pandas 3 keeps missing values missing there, so a run
    without the value would neither count as different nor print."""
    return list(dict.fromkeys("none" if pd.isna(v) else str(v) for v in column))


def _order(row: Row) -> tuple[Any, ...]:
    """Settings in natural order; within one, the single-task reference first, then by size."""
    setting = tuple(_natural(v) for v in row.setting.values())
    return (setting, not row.is_reference, row.params_m or 0.0, row.method)


def _plain(value: Any) -> Any:
    """A Python scalar for a pandas/numpy one (so 96 stays an int in CSV), None for NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value.item() if hasattr(value, "item") else value


def _natural(value: Any) -> tuple[int, float, str]:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and not pd.isna(value):
        return (0, float(value), "")
    return (1, 0.0, str(value))


def _published_setting_text() -> str:
    table = published.published_table()
    return f"{table.dataset}, {table.backbone}, {table.img_size} px"


def _published_rows() -> list[Row]:
    table = published.published_table()
    setting = {"dataset": table.dataset, "backbone": table.backbone,
               "tasks": ",".join(table.tasks), "img_size": table.img_size,
               "eval_resolution": table.eval_resolution}
    rows = []
    for entry in published.published_rows():
        rows.append(Row(
            method=entry.method, setting=dict(setting),
            metrics={t: Stat(v, None, 1) for t, v in entry.primary.items()},
            delta_m=Stat(entry.delta_m_printed, None, 1), params_m=entry.trainable_params_m,
            step_ms=None, n=None, reference=table.reference_label, source="published",
            delta_m_recomputed=entry.delta_m_recomputed, consistent=entry.consistent))
    return rows


def require_rows(comparison: Comparison) -> None:
    """Raise when there is nothing of ours to tabulate (every run failed)."""
    if not comparison.ours:
        raise PebenchError(f"no completed run in '{comparison.directory}' to compare "
                           f"({len(comparison.failed)} failed, listed above).")
