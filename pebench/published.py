"""The published PASCAL-Context / Swin-T table (results/reference/), read as package data.

The CSV lives once, in ``results/reference/``, where people read it next to its source note;
the wheel maps that folder to the package ``pebench.reference_data`` (pyproject), so an
installed copy reads it through importlib.resources and a source checkout reads the folder.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

import pandas as pd

import pebench
from pebench.primary import PrimaryMetric, delta_m

TABLE_FILE = "published_pascal_context_swin_t.csv"
DATA_PACKAGE_DIR = "reference_data"  # pebench.reference_data in a wheel
SOURCE_DIR = Path("results") / "reference"  # the same folder in a source checkout

# The setting the published numbers were measured in (Polyhistor protocol).
DATASET = "pascal-context"
BACKBONE = "swin-t"
IMG_SIZE = 448
# Task -> CSV column; units are pebench's (mIoU in %, normals' mean angle in degrees).
METRIC_COLUMNS = {"semseg": "semseg_miou", "human_parts": "human_parts_miou",
                  "saliency": "saliency_miou", "normals": "normals_mean_deg"}
# What each column measures: the primary metric of the task of that name.
PRIMARY_METRICS = {"semseg": PrimaryMetric("mIoU", True),
                   "human_parts": PrimaryMetric("mIoU", True),
                   "saliency": PrimaryMetric("mIoU", True),
                   "normals": PrimaryMetric("mean", False)}
SINGLE_TASK_ROW = "Single-task full fine-tuning"
CITATION = "Liu et al., NeurIPS 2022, Table 1, as re-reported by Agiza et al., CVPR 2024"
REFERENCE_LABEL = f"published single-task numbers ({CITATION})"
# Printed Δm values have two decimals; a recomputation further off than this disagrees.
CONSISTENCY_TOLERANCE = 0.02


def in_published_setting(dataset: str, backbone: str, img_size: int,
                         tasks: tuple[str, ...] | list[str]) -> bool:
    """Whether published numbers apply: PASCAL-Context, Swin-T, 448 px, tasks among the
    published four (all four for a whole-model figure such as a parameter count)."""
    return (dataset == DATASET and backbone == BACKBONE and img_size == IMG_SIZE
            and set(tasks) <= set(METRIC_COLUMNS))


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


def table_text() -> str:
    """The CSV text, from the installed package data or else from the source checkout."""
    packaged = resources.files(pebench) / DATA_PACKAGE_DIR / TABLE_FILE
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8")
    source = Path(pebench.__file__).resolve().parent.parent / SOURCE_DIR / TABLE_FILE
    return source.read_text(encoding="utf-8")


@cache
def published_rows() -> tuple[PublishedRow, ...]:
    """Every published row, with Δm recomputed here from its four metrics against the
    single-task row (not trusted from the file), so an inconsistent row shows."""
    frame = pd.read_csv(io.StringIO(table_text()))
    primary = [{task: float(row[column]) for task, column in METRIC_COLUMNS.items()}
               for _, row in frame.iterrows()]
    reference = primary[frame.index[frame["method"] == SINGLE_TASK_ROW][0]]
    higher = {task: metric.higher_is_better for task, metric in PRIMARY_METRICS.items()}
    return tuple(
        PublishedRow(method=str(row["method"]), primary=values,
                     trainable_params_m=float(row["trainable_params_m"]),
                     delta_m_printed=float(row["delta_m_published"]),
                     delta_m_recomputed=delta_m(values, reference, higher))
        for (_, row), values in zip(frame.iterrows(), primary, strict=True))


def published_single_task() -> dict[str, float]:
    """The published single-task primary metrics: the Δm reference of the published setting."""
    (row,) = (r for r in published_rows() if r.method == SINGLE_TASK_ROW)
    return dict(row.primary)
