"""The published PASCAL-Context / Swin-T table (results/reference/), read as package data.

The CSV lives once, in ``results/reference/``, where people read it next to its source note;
the wheel maps that folder to the package ``pebench.reference_data`` (pyproject), so an
installed copy reads it through importlib.resources and a source checkout reads the folder.
Beside the CSV, a JSON description says what the table holds: the setting it was measured
in, which column is which task's primary metric, and which row is the Δm reference. The
harness reads the table through it and names no task or method itself.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

import pandas as pd

import pebench
from pebench.primary import PrimaryMetric, delta_m

TABLE_FILE = "published_pascal_context_swin_t.csv"
DESCRIPTION_FILE = "published_pascal_context_swin_t.json"
DATA_PACKAGE_DIR = "reference_data"  # pebench.reference_data in a wheel
SOURCE_DIR = Path("results") / "reference"  # the same folder in a source checkout
# Printed Δm values have two decimals; a recomputation further off than this disagrees.
CONSISTENCY_TOLERANCE = 0.02


@dataclass(frozen=True)
class PublishedTable:
    """The description of the published table (``DESCRIPTION_FILE``)."""

    dataset: str
    backbone: str
    img_size: int
    eval_resolution: str  # where the labels were when the meters saw them (RunConfig's)
    metric_columns: dict[str, str]  # task -> CSV column; units are pebench's
    primary_metrics: dict[str, PrimaryMetric]  # task -> what its column measures
    reference_row: str  # the Δm reference (single-task full fine-tuning)
    citation: str

    @property
    def tasks(self) -> tuple[str, ...]:
        return tuple(self.metric_columns)

    @property
    def reference_label(self) -> str:
        return f"published {self.reference_row} ({self.citation})"


def _data_text(name: str) -> str:
    """A file of the reference folder, from the installed package data or else from the
    source checkout."""
    packaged = resources.files(pebench) / DATA_PACKAGE_DIR / name
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8")
    return (Path(pebench.__file__).resolve().parent.parent / SOURCE_DIR / name).read_text(
        encoding="utf-8")


def table_text() -> str:
    """The CSV text."""
    return _data_text(TABLE_FILE)


@cache
def published_table() -> PublishedTable:
    description = json.loads(_data_text(DESCRIPTION_FILE))
    setting, columns = description["setting"], description["metric_columns"]
    return PublishedTable(
        dataset=setting["dataset"], backbone=setting["backbone"], img_size=setting["img_size"],
        eval_resolution=setting["eval_resolution"],
        metric_columns={c["task"]: column for column, c in columns.items()},
        primary_metrics={c["task"]: PrimaryMetric(c["metric"], c["higher_is_better"])
                         for c in columns.values()},
        reference_row=description["delta_m_reference_row"], citation=description["citation"])


def in_published_setting(dataset: str, backbone: str, img_size: int,
                         tasks: tuple[str, ...] | list[str],
                         eval_resolution: str | None = None) -> bool:
    """Whether published numbers apply: the table's dataset, backbone and image size, tasks
    among its tasks (all of them for a whole-model figure such as a parameter count), and for
    a metric its evaluation resolution (None: a figure that does not depend on it)."""
    table = published_table()
    return (dataset == table.dataset and backbone == table.backbone
            and img_size == table.img_size and set(tasks) <= set(table.tasks)
            and eval_resolution in (None, table.eval_resolution))


@dataclass(frozen=True)
class PublishedRow:
    method: str
    primary: dict[str, float]
    trainable_params_m: float
    delta_m_printed: float
    delta_m_recomputed: float

    @property
    def consistent(self) -> bool:
        return abs(self.delta_m_printed - self.delta_m_recomputed) <= CONSISTENCY_TOLERANCE


@cache
def published_rows() -> tuple[PublishedRow, ...]:
    """Every published row, with Δm recomputed here from its metrics against the reference
    row (not trusted from the file), so an inconsistent row shows."""
    table = published_table()
    frame = pd.read_csv(io.StringIO(table_text()))
    primary = [{task: float(row[column]) for task, column in table.metric_columns.items()}
               for _, row in frame.iterrows()]
    reference = primary[frame.index[frame["method"] == table.reference_row][0]]
    higher = {task: metric.higher_is_better for task, metric in table.primary_metrics.items()}
    return tuple(
        PublishedRow(method=str(row["method"]), primary=values,
                     trainable_params_m=float(row["trainable_params_m"]),
                     delta_m_printed=float(row["delta_m_published"]),
                     delta_m_recomputed=delta_m(values, reference, higher))
        for (_, row), values in zip(frame.iterrows(), primary, strict=True))


def published_reference_values() -> dict[str, float]:
    """The primary metrics of the published Δm reference row."""
    (row,) = (r for r in published_rows() if r.method == published_table().reference_row)
    return dict(row.primary)
