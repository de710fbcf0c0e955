"""Datasets read from a folder in a community format: the layout interface and the dataset.

A :class:`FolderLayout` knows one on-disk format (where the split files, images and label
files are, how each label file decodes into pebench's target conventions); the
:class:`FolderDataset` turns a layout into training or validation samples (augmentation,
resize, normalisation) and ``pebench data check`` walks the same layout, so a file the
check accepts is a file the run can load.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch.utils.data import Dataset

from pebench.data.augment import IDENTITY, TargetKind, random_geometry, warp_image, warp_target
from pebench.data.base import DatasetSource, Sample
from pebench.data.files import DataFileError, read_image
from pebench.data.stream import Draw, unpack
from pebench.data.transforms import normalize_image
from pebench.errors import PebenchError

SPLITS = ("train", "val")


class FolderLayout(ABC):
    """One dataset format rooted at ``root``. Target arrays are at the image's size:

    ``class`` targets uint8 HxW (255 = ignore), ``direction`` targets (surface normals)
    float32 HxWx3 (zero vector = ignore), ``scalar`` targets (depth) float32 HxW (0 =
    invalid).
    """

    dataset: ClassVar[str]  # the registered name, for messages
    expected_sizes: ClassVar[dict[str, int]]  # images per split in the official release
    kinds: ClassVar[dict[str, TargetKind]]  # task -> kind of its target

    def __init__(self, root: Path) -> None:
        self.root = root

    @abstractmethod
    def split_ids(self, split: str) -> list[str]:
        """The ids of a split, from its split file (DataFileError if it is missing)."""

    @abstractmethod
    def image_path(self, image_id: str) -> Path: ...

    @abstractmethod
    def task_files(self, task: str, image_id: str) -> list[Path]:
        """The files the target of ``task`` is read from."""

    @abstractmethod
    def read_target(self, task: str, image_id: str,
                    shape: tuple[int, int] | None) -> np.ndarray:
        """The target of ``task`` at the image's ``shape`` (None: do not check the size)."""

    def prepare(self, ids: list[str], tasks: tuple[str, ...]) -> None:  # noqa: B027 (optional)
        """Build (or load from the user cache) whatever index loading needs; by default
        nothing."""

    def read_image(self, image_id: str) -> np.ndarray:
        return read_image(self.image_path(image_id))


class FolderSource(DatasetSource):
    """A registered dataset read through a :class:`FolderLayout`."""

    layout_class: ClassVar[type[FolderLayout]]

    def layout(self, root: Path | None) -> FolderLayout:
        if root is None:
            raise PebenchError(f"dataset '{self.info.name}' needs --data-root pointing at its "
                               "folder on disk (pebench never downloads it).")
        return self.layout_class(root)

    def build(self, split: str, root: Path | None, img_size: int, tasks: tuple[str, ...],
              train: bool, eval_resolution: str = "input") -> Dataset[Sample]:
        return FolderDataset(self.layout(root), split, img_size, tasks, train,
                             original_labels=not train and eval_resolution == "original")


class FolderDataset(Dataset[Sample]):
    """One split of a folder dataset as pebench samples of ``img_size``×``img_size``.

    Training samples are augmented (:mod:`pebench.data.augment`); validation samples are only
    resized, labels with the nearest pixel, so evaluation happens at the input size, which is
    the size the models predict at; with ``original_labels`` their labels keep the size of
    their files instead (evaluation at the original resolution). Every file the split needs
    is looked for up front, so a missing file stops the run before training, not hours into
    it.

    The random augmentation of a training sample is drawn from the seed its
    :class:`~pebench.data.stream.Draw` carries, so a run is reproducible and resumable
    whatever the number of loader workers or processes.
    """

    def __init__(self, layout: FolderLayout, split: str, img_size: int,
                 tasks: tuple[str, ...], train: bool, original_labels: bool = False) -> None:
        if split not in SPLITS:
            raise PebenchError(f"unknown split '{split}'; valid: {', '.join(SPLITS)}.")
        unknown = [t for t in tasks if t not in layout.kinds]
        if unknown:
            raise PebenchError(f"dataset '{layout.dataset}' has no labels for "
                               f"{', '.join(unknown)}; it offers {', '.join(layout.kinds)}.")
        self.layout = layout
        self.split = split
        self.img_size = img_size
        self.tasks = tuple(tasks)
        self.train = train
        self.original_labels = original_labels
        self.ids = layout.split_ids(split)
        _require_files(layout, self.ids, self.tasks)
        layout.prepare(self.ids, self.tasks)

    def __len__(self) -> int:
        return len(self.ids)

    def raw(self, index: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The image and targets of sample ``index`` at their original size."""
        image_id = self.ids[index]
        image = self.layout.read_image(image_id)
        shape = (image.shape[0], image.shape[1])
        return image, {t: self.layout.read_target(t, image_id, shape) for t in self.tasks}

    def __getitem__(self, item: int | Draw) -> Sample:
        index, seed = unpack(item)
        image, targets = self.raw(index)
        geometry = IDENTITY
        if self.train:
            if seed is None:
                raise ValueError("a training sample is asked for by a Draw (index and "
                                 "augmentation seed), as BatchIndexStream yields them")
            geometry = random_geometry(np.random.default_rng(seed))
        sample: Sample = {"image": normalize_image(warp_image(image, geometry, self.img_size))}
        for task, target in targets.items():
            kind = self.layout.kinds[task]
            if not self.original_labels:
                target = warp_target(target, kind, geometry, self.img_size)
            sample[task] = to_tensor(target, kind)
        return sample


def to_tensor(target: np.ndarray, kind: TargetKind) -> torch.Tensor:
    """A target array in pebench's batch conventions (see pebench.task), without the batch."""
    if kind == "class":
        return torch.from_numpy(target.astype(np.int64))
    # np.require copies read-only arrays (PIL's), which torch must not share
    if kind == "scalar":
        return torch.from_numpy(np.require(target, np.float32, ("C", "W")))[None]
    return torch.from_numpy(np.require(target.transpose(2, 0, 1), np.float32, ("C", "W")))


def _require_files(layout: FolderLayout, ids: list[str], tasks: tuple[str, ...]) -> None:
    missing = [path for image_id in ids
               for path in (layout.image_path(image_id),
                            *(p for t in tasks for p in layout.task_files(t, image_id)))
               if not path.is_file()]
    if missing:
        count = f"{len(missing)} files, e.g." if len(missing) > 1 else "the file"
        raise DataFileError(
            f"dataset '{layout.dataset}' misses {count} '{missing[0]}'; run 'pebench data "
            f"check --dataset {layout.dataset} --data-root {layout.root}' to list every "
            "problem.", "missing", missing[0])
