"""``pebench params``: every method's trainable parameters per group, without training.

Models are built on PyTorch's meta device: parameters have shapes but no storage and no
initialisation, so counting every registered method on Swin-T takes well under a second after
the imports, needs no weights and no data. A method whose ``attach`` cannot run on the meta
device (an op without a meta kernel, a ``.item()``) is built on the CPU instead, and its row
says so.

The published trainable-parameter count (``trainable_params_m`` of the reference table) is
shown beside a method that names its published row (``Method.published_row``) only in the
published setting: Swin-T, PASCAL-Context's four tasks, 448×448 input, and the method's
default hyperparameters. Anywhere else there is nothing published to compare with.
"""

from __future__ import annotations

import csv
import io
import json
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from pebench import published
from pebench.backbones import BACKBONES
from pebench.config import check_img_size, check_tasks, method_config
from pebench.data.base import DatasetInfo
from pebench.data.infos import dataset_info
from pebench.errors import MissingDependency, PebenchError
from pebench.method import METHODS
from pebench.model import MultiTaskModel, build_model
from pebench.params import GROUPS, ParamCounts, count_parameters
from pebench.task import TASKS

# The columns of --format csv and the keys of each --format json object, in order.
FIELDS = ("method", *GROUPS, "trainable", "total", "published")


@dataclass(frozen=True)
class Setting:
    """What the models are built for. ``skipped_tasks``: the dataset's default tasks that
    have no registered task yet and are therefore left out."""

    backbone: str
    dataset: str
    info: DatasetInfo
    tasks: tuple[str, ...]
    img_size: int
    skipped_tasks: tuple[str, ...] = ()

    @property
    def is_published(self) -> bool:
        # A parameter count is of the whole model: all four published tasks, each once.
        return (published.in_published_setting(self.dataset, self.backbone, self.img_size,
                                               self.tasks)
                and sorted(self.tasks) == sorted(published.published_table().tasks))

    def describe(self) -> str:
        return (f"{self.backbone}, {self.dataset} ({', '.join(self.tasks)}), "
                f"{self.img_size}×{self.img_size}")


@dataclass(frozen=True)
class MethodParams:
    """One method's row: counts per group, the published count (millions) where one applies,
    where the model was built and how long that took."""

    method: str
    counts: ParamCounts
    published_m: float | None
    built_on: str  # "meta", or "cpu" when the method could not be built on the meta device
    build_s: float
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.published_m is None or self.published_m == 0:
            return None
        return self.counts.trainable / (self.published_m * 1e6)

    def as_dict(self) -> dict[str, Any]:
        """The documented keys of ``--format json`` (and columns of ``--format csv``)."""
        counts = self.counts.as_dict()
        row: dict[str, Any] = {"method": self.method}
        row.update({group: counts[group] for group in GROUPS})
        row.update(trainable=counts["trainable"], total=counts["total"],
                   published=self.published_m)
        return row


@dataclass
class Accounting:
    setting: Setting
    rows: list[MethodParams] = field(default_factory=list)
    seconds: float = 0.0
    # "method: why" for the methods left out because an optional package is missing.
    unavailable: list[str] = field(default_factory=list)


def resolve_setting(backbone: str | None = None, dataset: str | None = None,
                    tasks: tuple[str, ...] | None = None,
                    img_size: int | None = None) -> Setting:
    """Validate the setting; raises PebenchError with one line for the first problem.

    Backbone and dataset default to the published table's (the setting its parameter
    counts were measured in).

    Explicit ``tasks`` must be offered by the dataset *and* registered. Without them, the
    dataset's default tasks are used, minus those not registered yet (reported in
    ``skipped_tasks``), so a label space that is ahead of the task registry never breaks
    accounting.
    """
    table = published.published_table()
    backbone = backbone if backbone is not None else table.backbone
    dataset = dataset if dataset is not None else table.dataset
    BACKBONES.get(backbone)  # one-line error for an unknown name
    info = dataset_info(dataset)
    skipped: tuple[str, ...] = ()
    if tasks is None:
        chosen = tuple(t for t in info.default_tasks if t in TASKS)
        skipped = tuple(t for t in info.default_tasks if t not in TASKS)
        if not chosen:
            raise PebenchError(f"no task to build for dataset '{dataset}': none of its tasks "
                               f"({', '.join(info.tasks)}) is registered.")
    else:
        check_tasks(info, tasks)
        chosen = tuple(tasks)
    size = img_size if img_size is not None else info.default_img_size
    check_img_size(backbone, size)
    return Setting(backbone, dataset, info, chosen, size, skipped)


def parse_method_overrides(items: list[str]) -> dict[str, dict[str, str]]:
    """``["lora.rank=8"]`` → ``{"lora": {"rank": "8"}}`` (method names contain no dots)."""
    overrides: dict[str, dict[str, str]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        method, dot, name = key.strip().partition(".")
        if not sep or not dot or not method or not name:
            raise PebenchError(f"--set '{item}' is not of the form method.key=value "
                               "(e.g. --set METHOD.key=value).")
        overrides.setdefault(method, {})[name.strip()] = value.strip()
    return overrides


def count_methods(setting: Setting, methods: list[str] | None = None,
                  overrides: dict[str, dict[str, str]] | None = None,
                  device: str = "meta") -> Accounting:
    """Build each method's model for ``setting`` (default: every registered method, in name
    order) and count its parameters by group."""
    start = time.perf_counter()
    names = list(methods) if methods is not None else METHODS.names()
    if not names:
        raise PebenchError("--methods names no method; see 'pebench list methods'.")
    for name in names:
        METHODS.get(name)  # one-line error for an unknown name
    if len(set(names)) != len(names):
        raise PebenchError(f"a method is listed twice in --methods {','.join(names)}.")
    overrides = overrides or {}
    for name in overrides:
        if name not in names:
            raise PebenchError(f"--set names method '{name}', which is not among the methods "
                               f"counted ({', '.join(names)}).")
    configs = {name: method_config(name, overrides.get(name, {})) for name in names}
    published_m = published_trainable_m() if setting.is_published else {}
    result = Accounting(setting)
    for name in names:
        cls = METHODS.get(name)
        config = configs[name]
        row_start = time.perf_counter()
        built_on, note = device, ""
        try:
            model = build_for_setting(name, setting, config, device)
        except MissingDependency as exc:
            if methods is not None:
                raise
            result.unavailable.append(f"{name}: {exc}")
            continue
        except PebenchError:
            raise
        except Exception as exc:
            if device != "meta":
                raise
            built_on = "cpu"
            note = f"built on the CPU: the meta device failed ({type(exc).__name__}: {exc})"
            model = build_for_setting(name, setting, config, "cpu")
        counts = count_parameters(model)
        del model
        published_row = cls.published_row(config)
        row_published = published_m.get(published_row) if published_row is not None else None
        if cls.published_name is not None and setting.is_published and published_row is None:
            note = "; ".join(filter(None, [note, "no published count: non-default --set"]))
        result.rows.append(MethodParams(name, counts, row_published, built_on,
                                        time.perf_counter() - row_start, note))
    result.seconds = time.perf_counter() - start
    return result


def build_for_setting(method: str, setting: Setting, config: Any, device: str) -> MultiTaskModel:
    """On ``meta`` nothing is allocated or initialised: timm's init runs on shapes only."""
    with torch.device(device):
        return build_model(method, config, setting.backbone, setting.img_size, setting.tasks,
                           setting.info)


def published_trainable_m() -> dict[str, float]:
    """Published row name → trainable parameters in millions (``trainable_params_m``)."""
    return {row.method: row.trainable_params_m for row in published.published_rows()}


# ---- output ---------------------------------------------------------------------------------

TABLE_HEADERS = ("method", "decoders", "encoder\nshared", "encoder\ntask-specific", "other",
                 "trainable", "total", "published", "ours /\npublished")


def table_cells(row: MethodParams) -> list[str]:
    """One table row as text: thousands separators, published in M with 2 decimals."""
    counts = row.counts
    published = f"{row.published_m:.2f}M" if row.published_m is not None else "—"
    ratio = f"{row.ratio:.3f}" if row.ratio is not None else "—"
    return [row.method, f"{counts.decoders:,}", f"{counts.encoder_shared:,}",
            f"{counts.encoder_task_specific:,}", f"{counts.other:,}", f"{counts.trainable:,}",
            f"{counts.total:,}", published, ratio]


def to_json(rows: list[MethodParams]) -> str:
    return json.dumps([row.as_dict() for row in rows], indent=2)


def to_csv(rows: list[MethodParams]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        values = row.as_dict()
        if values["published"] is None:
            values["published"] = ""
        writer.writerow(values)
    return buffer.getvalue()
