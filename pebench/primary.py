"""A task's primary metric as the results side reads it, and Δm over primary metrics.

Tables, Δm and figures need two facts of each task's primary metric: its name and whether
higher is better. A run records them (``RunRecord.primary_metric``) beside the values, so
nothing that reads records has to import the tasks, and with them torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class PrimaryMetric:
    name: str
    higher_is_better: bool

    @property
    def arrow(self) -> str:
        return "↑" if self.higher_is_better else "↓"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "higher_is_better": self.higher_is_better}

    @classmethod
    def from_json(cls, data: Any) -> PrimaryMetric:
        """Raises ValueError when ``data`` is not what ``to_json`` writes."""
        if not (isinstance(data, dict) and isinstance(data.get("name"), str)
                and isinstance(data.get("higher_is_better"), bool)):
            raise ValueError(f"not a primary metric ({{name, higher_is_better}}): {data!r}")
        return cls(data["name"], data["higher_is_better"])


def registered_primary_metric(task: str) -> PrimaryMetric:
    """The primary metric a registered task declares: what a run records, and what is
    read for records written before runs recorded it. It imports the tasks, and with them
    torch, which is why records carry it."""
    from pebench.task import TASKS

    spec = TASKS.get(task)
    return PrimaryMetric(spec.primary_metric, spec.higher_is_better)


def delta_m(primary: Mapping[str, float], reference: Mapping[str, float],
            higher_is_better: Mapping[str, bool]) -> float:
    """Δm = mean over tasks of s·(M − M_ref)/M_ref × 100, s = +1 (higher is better) or −1."""
    if not primary:
        raise ValueError("Δm needs at least one task")
    terms = []
    for task, value in primary.items():
        sign = 1.0 if higher_is_better[task] else -1.0
        terms.append(sign * (value - reference[task]) / reference[task] * 100.0)
    return sum(terms) / len(terms)
