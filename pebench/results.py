"""Run records: one JSON file per run, written atomically, plus a trainable-weights checkpoint.

The record schema is documented in the README ("Result files"). Records are data users
publish from: they are written to a temporary file and renamed, never half-written, and a
failed run is recorded as failed with its error, never as a result.
"""

from __future__ import annotations

import dataclasses
import json
import math
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from pebench.atomic import atomic_write_text
from pebench.primary import PrimaryMetric, registered_primary_metric

SCHEMA = "pebench.run/1"
Status = Literal["running", "completed", "failed", "interrupted"]


@dataclass
class RunRecord:
    run_id: str
    created_at: str
    method: str
    method_config: dict[str, Any]
    tasks: list[str]
    dataset: str
    backbone: str
    img_size: int
    seed: int
    steps: int  # planned
    config: dict[str, Any]
    status: Status = "running"
    error: str | None = None
    steps_done: int = 0
    resume_command: str | None = None  # while the run can be resumed from its saved state
    resumes: list[dict[str, Any]] = field(default_factory=list)  # step, time, device of each
    weights: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    primary: dict[str, float] = field(default_factory=dict)
    # Each task's primary metric: {"name": ..., "higher_is_better": ...} (pebench.primary).
    primary_metric: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Whether the run's method is the Δm reference (Method.delta_m_reference); None in records
    # written before runs recorded it.
    delta_m_reference_run: bool | None = None
    params: dict[str, int] = field(default_factory=dict)
    timing: dict[str, float] = field(default_factory=dict)
    # How it ran, which does not change what it computes: device, processes, loader workers.
    runtime: dict[str, Any] = field(default_factory=dict)
    eval_history: list[dict[str, Any]] = field(default_factory=list)
    peak_memory_mb: float | None = None
    peak_memory_source: str | None = None
    checkpoint: str | None = None
    versions: dict[str, str] = field(default_factory=dict)
    git_commit: str | None = None
    schema: str = SCHEMA

    def primary_metrics(self) -> dict[str, PrimaryMetric]:
        """Each task's primary metric as the run recorded it; for a record written before
        runs recorded it, as the registered task declares it (which imports the tasks)."""
        return {task: PrimaryMetric.from_json(self.primary_metric[task])
                if task in self.primary_metric else registered_primary_metric(task)
                for task in self.tasks}

    def is_delta_m_reference(self) -> bool:
        """Whether this run is a Δm reference by its method; for a record written before runs
        recorded it, as the registered method declares (which imports the methods), and not
        when that method is not installed."""
        if self.delta_m_reference_run is not None:
            return self.delta_m_reference_run
        from pebench.method import METHODS

        return self.method in METHODS and METHODS.get(self.method).delta_m_reference

    @property
    def eval_resolution(self) -> str:
        """Where the meters saw the labels; records from before the option: the input size."""
        return str(self.config.get("eval_resolution", "input"))

    def to_json(self) -> str:
        fields = dataclasses.asdict(self)
        ordered = {"schema": fields.pop("schema"), **fields}  # readers check the schema first
        return json.dumps(_finite_or_null(ordered), indent=2, allow_nan=False, default=str)

    def write(self, out_dir: Path) -> Path:
        path = out_dir / f"{self.run_id}.json"
        atomic_write_text(path, self.to_json() + "\n")
        return path

    @classmethod
    def from_dict(cls, data: Any) -> RunRecord:
        """The record a parsed JSON document holds. Raises ValueError naming what is wrong
        when it is not a ``pebench.run/1`` record, so readers can skip foreign files instead
        of averaging them in. Keys this version does not know are ignored."""
        if not isinstance(data, dict):
            raise ValueError(f"not a pebench run record (a JSON {type(data).__name__})")
        if data.get("schema") != SCHEMA:
            found = data.get("schema")
            raise ValueError(f"not a {SCHEMA} record (schema: {found!r})" if found is not None
                             else "not a pebench run record (no 'schema' field)")
        known = {f.name: f for f in dataclasses.fields(cls)}
        required = {name for name, f in known.items() if f.default is dataclasses.MISSING
                    and f.default_factory is dataclasses.MISSING}
        missing = sorted(required - set(data))
        if missing:
            raise ValueError(f"{SCHEMA} record without {', '.join(missing)}")
        record = cls(**{k: v for k, v in data.items() if k in known})
        _check_types(record)
        return record


def read_record(path: Path) -> RunRecord:
    """Read one record file; OSError or ValueError (bad JSON, foreign or malformed record)."""
    return RunRecord.from_dict(json.loads(path.read_text(encoding="utf-8")))


def _check_types(record: RunRecord) -> None:
    """The fields tables are built from must have their documented types."""
    expected: dict[str, type | tuple[type, ...]] = {
        "run_id": str, "method": str, "dataset": str, "backbone": str, "status": str,
        "tasks": list, "img_size": int, "seed": int, "steps": int, "config": dict,
        "primary": dict, "params": dict, "timing": dict, "weights": dict,
        "primary_metric": dict}
    for name, kind in expected.items():
        value = getattr(record, name)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise ValueError(f"{SCHEMA} record with an invalid '{name}': {value!r}")
    for task, value in record.primary.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ValueError(f"{SCHEMA} record with a non-numeric primary['{task}']: {value!r}")
    if not isinstance(record.delta_m_reference_run, (bool, type(None))):
        raise ValueError(f"{SCHEMA} record with a non-boolean delta_m_reference_run: "
                         f"{record.delta_m_reference_run!r}")
    for task, value in record.primary_metric.items():
        try:
            PrimaryMetric.from_json(value)
        except ValueError as exc:
            raise ValueError(f"{SCHEMA} record with an invalid primary_metric['{task}']: "
                             f"{exc}") from None


def _finite_or_null(value: Any) -> Any:
    """JSON has no NaN: a metric that could not be computed (no valid pixel) becomes null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite_or_null(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite_or_null(v) for v in value]
    return value


def new_run_id(method: str, dataset: str, backbone: str, seed: int) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    return f"{stamp}-{method}-{dataset}-{backbone}-s{seed}-{uuid.uuid4().hex[:6]}"


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
