"""Where a run's Δm reference comes from: single-task runs of the same setting."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pebench.evaluate import delta_m
from pebench.results import RunRecord
from pebench.task import Task

REFERENCE_METHOD = "single-task"


@dataclass(frozen=True)
class DeltaMReference:
    delta_m: float
    values: dict[str, float]
    run_ids: list[str]

    def describe(self) -> dict[str, Any]:
        return {"kind": "single-task runs", "method": REFERENCE_METHOD, "runs": self.run_ids,
                "primary": self.values}


def _same_setting(record: RunRecord, other: dict[str, Any]) -> bool:
    config = other.get("config", {})
    return (other.get("status") == "completed" and other.get("method") == REFERENCE_METHOD
            and other.get("run_id") != record.run_id
            and other.get("dataset") == record.dataset and other.get("backbone") == record.backbone
            and other.get("img_size") == record.img_size and other.get("steps") == record.steps
            and config.get("batch_size") == record.config.get("batch_size")
            and other.get("weights", {}).get("sha256") == record.weights.get("sha256")
            and set(record.tasks) <= set(other.get("primary", {})))


def find_delta_m_reference(record: RunRecord, results_dir: Path,
                           tasks: dict[str, Task]) -> DeltaMReference | None:
    """Mean primary metrics of the completed single-task runs in ``results_dir`` with the same
    dataset, backbone, input size, budget and backbone weights; None when there are none."""
    matches = []
    for path in sorted(results_dir.glob("*.json")):
        try:
            other = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(other, dict) and _same_setting(record, other):
            matches.append(other)
    if not matches:
        return None
    values = {task: sum(m["primary"][task] for m in matches) / len(matches) for task in tasks}
    higher = {name: task.higher_is_better for name, task in tasks.items()}
    return DeltaMReference(delta_m(record.primary, values, higher), values,
                           [m["run_id"] for m in matches])
