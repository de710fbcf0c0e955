"""The run records of a results directory, as what tables are made from.

A results directory collects files from many runs, machines and versions, and people drop
other JSON files into it. One unreadable or foreign file must not stop a table from being
made, and must not be averaged in silently either: it is skipped and named. Failed runs are
kept apart from completed ones so that no mean ever includes them.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from pebench.errors import PebenchError
from pebench.primary import PrimaryMetric
from pebench.results import RunRecord, read_record
from pebench.settings import with_later_fields

METHOD_PREFIX = "method."  # method hyperparameters become columns "method.<name>"
PRIMARY_PREFIX = "primary."  # each task's primary metric: "primary.<task>"


@dataclass(frozen=True)
class Skipped:
    path: Path
    reason: str

    def warning(self) -> str:
        return f"skipped {self.path}: {self.reason}"


@dataclass
class Scan:
    """Every record found, in file-name order, and every file that was not one."""

    records: list[RunRecord] = field(default_factory=list)
    paths: list[Path] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


def scan_records(directory: Path, recursive: bool = False) -> Scan:
    """Read every ``*.json`` file in ``directory`` (and below it if ``recursive``).

    Files that cannot be read, are not JSON, are not ``pebench.run/1`` records or repeat a run
    id already seen (a copied file would otherwise count twice) land in ``skipped``.
    """
    scan = Scan()
    seen: dict[str, Path] = {}
    pattern = "**/*.json" if recursive else "*.json"
    for path in sorted(p for p in directory.glob(pattern) if p.is_file()):
        try:
            record = read_record(path)
        except json.JSONDecodeError as exc:
            scan.skipped.append(Skipped(path, f"not valid JSON ({exc.msg}, line {exc.lineno})"))
            continue
        except (OSError, UnicodeDecodeError) as exc:
            scan.skipped.append(Skipped(path, f"unreadable ({exc})"))
            continue
        except ValueError as exc:
            scan.skipped.append(Skipped(path, str(exc)))
            continue
        if record.run_id in seen:
            scan.skipped.append(Skipped(path, f"repeats run id {record.run_id} of "
                                              f"{seen[record.run_id]}"))
            continue
        seen[record.run_id] = path
        scan.records.append(record)
        scan.paths.append(path)
    return scan


@dataclass
class RunFrame:
    """Completed runs (one row each), the other runs, the skipped files, and the records
    themselves (keyed by run id) for what needs more than a row, such as Δm references."""

    completed: pd.DataFrame
    failed: pd.DataFrame
    skipped: list[Skipped]
    records: dict[str, RunRecord]
    directory: Path

    @property
    def tasks(self) -> list[str]:
        """Tasks of the completed runs, in order of first appearance."""
        seen: dict[str, None] = {}
        for tasks in self.completed["tasks"]:
            seen.update(dict.fromkeys(tasks.split(",")))
        return list(seen)

    def primary_metrics(self) -> dict[str, PrimaryMetric]:
        """Each task's primary metric, as the completed runs recorded it."""
        found: dict[str, PrimaryMetric] = {}
        for run_id in self.completed["run_id"]:
            record = self.records[run_id]
            if any(task not in found for task in record.tasks):
                found = {**record.primary_metrics(), **found}
        return found

    def setting_columns(self) -> list[str]:
        """Columns ``--group-by`` may name: the record's setting, its config and its method
        hyperparameters; not the outcome (metrics, timing) nor bookkeeping (run id, path)."""
        outcome = {"run_id", "status", "error", "params_trainable", "train_s", "step_ms",
                   "path", "method"}
        return [c for c in self.completed.columns
                if c not in outcome and not c.startswith(PRIMARY_PREFIX)]


NAMED_SKIPS = 3  # skipped files a one-line error names; the rest are counted


def load_frame(directory: Path) -> RunFrame:
    """Every run record under ``directory`` (recursively) as a RunFrame.

    Raises PebenchError when the directory is missing or holds no run record at all, saying
    what to do; skipped files are reported in ``RunFrame.skipped``, not raised.
    """
    if not directory.exists():
        raise PebenchError(f"results directory '{directory}' does not exist; run "
                           "'pebench run --method M' first or pass --results DIR.")
    if not directory.is_dir():
        raise PebenchError(f"--results '{directory}' is not a directory.")
    scan = scan_records(directory, recursive=True)
    if not scan.records:
        # One line still: each skipped file (the first few) with why, relative to the folder.
        skipped = ""
        if scan.skipped:
            named = "; ".join(f"{s.path.relative_to(directory)}: {s.reason}"
                              for s in scan.skipped[:NAMED_SKIPS])
            more = len(scan.skipped) - NAMED_SKIPS
            skipped = (f" (skipped {named}" + (f"; and {more} more JSON file(s)" if more > 0
                                               else "") + ")")
        raise PebenchError(f"no pebench run records in '{directory}'{skipped}; make some with "
                           "'pebench run --method M --out DIR' and compare them with "
                           "'pebench compare --results DIR'.")
    rows = [_row(record, path) for record, path in zip(scan.records, scan.paths, strict=True)]
    frame = pd.DataFrame(rows)
    done = frame["status"] == "completed"
    return RunFrame(completed=frame[done].reset_index(drop=True),
                    failed=frame[~done].reset_index(drop=True), skipped=scan.skipped,
                    records={r.run_id: r for r in scan.records}, directory=directory)


def _row(record: RunRecord, path: Path) -> dict[str, Any]:
    steps_done = record.steps if record.status == "completed" else 0
    train_s = record.timing.get("train_s")
    step_ms = train_s / steps_done * 1000.0 if train_s is not None and steps_done > 0 else math.nan
    row: dict[str, Any] = {
        "run_id": record.run_id, "method": record.method, "status": record.status,
        "error": record.error, "dataset": record.dataset, "backbone": record.backbone,
        "tasks": ",".join(record.tasks), "img_size": record.img_size, "steps": record.steps,
        "seed": record.seed, "weights_sha256": record.weights.get("sha256"),
        "params_trainable": record.params.get("trainable"),
        "train_s": math.nan if train_s is None else train_s, "step_ms": step_ms,
        "path": str(path),
        # Records from before these options ran in fp32, uncompiled.
        "precision": record.config.get("precision", "fp32"),
        "compile": bool(record.config.get("compile", False)),
        "eval_resolution": record.eval_resolution,
    }
    for key, value in with_later_fields(record.config).items():
        if key not in row and key not in ("out", "method_overrides"):
            row[key] = _scalar(value)
    for key, value in record.method_config.items():
        row[METHOD_PREFIX + key] = _scalar(value)
    for task, value in record.primary.items():
        row[PRIMARY_PREFIX + task] = math.nan if value is None else float(value)
    return row


def _scalar(value: Any) -> Any:
    """A value pandas can group by: lists become "a,b", mappings sorted JSON."""
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return value
