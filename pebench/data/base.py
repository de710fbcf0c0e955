"""The dataset interface and registry."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import torch
from torch.utils.data import Dataset

from pebench.registry import Registry

# A sample is a dict: "image" -> float32 (3, H, W) normalised; one entry per task with the
# target conventions of pebench.task (without the batch dimension).
Sample = dict[str, torch.Tensor]


@dataclass(frozen=True)
class DatasetInfo:
    """What the harness needs to know about a dataset before loading any of it."""

    name: str
    tasks: tuple[str, ...]
    default_tasks: tuple[str, ...]
    num_classes: dict[str, int] = field(default_factory=dict)
    default_img_size: int = 448
    needs_root: bool = True
    # Settings of a task's evaluation that belong to the dataset's published protocol, by
    # task name then key (the edge task's matching tolerance, say); the task reads its own.
    task_settings: dict[str, dict[str, float]] = field(default_factory=dict)

    def task_setting(self, task: str, key: str) -> float | None:
        """The dataset's value of ``key`` for ``task``, None where it declares none."""
        return self.task_settings.get(task, {}).get(key)


class DatasetSource(ABC):
    """A registered dataset: its info and a way to build a split."""

    info: ClassVar[DatasetInfo]
    description: ClassVar[str]

    @abstractmethod
    def build(self, split: str, root: Path | None, img_size: int, tasks: tuple[str, ...],
              train: bool, eval_resolution: str = "input") -> Dataset[Sample]:
        """The split ("train" or "val") at ``img_size``; ``train`` turns augmentation on.
        With ``eval_resolution="original"`` a validation split's targets keep their own size
        (the image is still resized to ``img_size``); samples of a split may then differ in
        target size, and the evaluation resizes each prediction to its label's."""


DATASETS: Registry[type[DatasetSource]] = Registry(
    "dataset", builtin_modules=("pebench.data.synthetic", "pebench.data.pascal_context",
                               "pebench.data.nyud"), entry_point_group="pebench.datasets"
)


def register_dataset(cls: type[DatasetSource]) -> type[DatasetSource]:
    DATASETS.add(cls.info.name, cls, cls.description)
    return cls
