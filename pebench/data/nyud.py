"""NYUD-v2 in the multi-task format of NYUD_MT (``--dataset nyud``).

Layout under ``--data-root`` (the extracted NYUD_MT folder)::

    images/<id>.jpg
    gt_sets/train.txt, val.txt      795 / 654 ids
    segmentation/<id>.png           40 classes stored as 1..40, 0 = unlabelled
    depth/<id>.npy                  depth in metres, 0 = no measurement
    normals/<id>.npy                HxWx3 surface normals, components in [-1, 1]
    edge/<id>.npy                   0 / 1 edge map

Segmentation is shifted to 0..39 with unlabelled pixels as 255 (ignore), the 40-way
protocol of the community loaders. The .npy arrays are taken as HxW (or HxWx1) for depth
and edge and HxWx3 for normals, float; non-finite depths count as missing measurements.
The normals are used in their stored axes, which pebench assumes to be x right, y down
(the axes its augmentation flips and rotates).
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np

from pebench.data.augment import TargetKind
from pebench.data.base import register_dataset
from pebench.data.files import DataFileError, check_size, read_npy, read_png, read_split
from pebench.data.folder import FolderLayout, FolderSource
from pebench.data.infos import NYUD
from pebench.task import IGNORE_INDEX

NUM_SEMSEG_CLASSES = NYUD.num_classes["semseg"]
_HINT = ("--data-root must be the extracted NYUD_MT folder (with images/, gt_sets/, "
         "segmentation/, depth/, normals/, edge/).")
_FOLDERS = {"semseg": ("segmentation", ".png"), "depth": ("depth", ".npy"),
            "normals": ("normals", ".npy"), "edge": ("edge", ".npy")}
_WHAT = {"semseg": "segmentation", "depth": "depth map", "normals": "normals map",
         "edge": "edge map"}


class NyudLayout(FolderLayout):
    dataset = NYUD.name
    expected_sizes: ClassVar[dict[str, int]] = {"train": 795, "val": 654}
    kinds: ClassVar[dict[str, TargetKind]] = {"semseg": "class", "depth": "scalar",
                                              "normals": "direction", "edge": "class"}

    def split_ids(self, split: str) -> list[str]:
        return read_split(self.root / "gt_sets" / f"{split}.txt", _HINT)

    def image_path(self, image_id: str) -> Path:
        return self.root / "images" / f"{image_id}.jpg"

    def task_files(self, task: str, image_id: str) -> list[Path]:
        folder, suffix = _FOLDERS[task]
        return [self.root / folder / f"{image_id}{suffix}"]

    def read_target(self, task: str, image_id: str,
                    shape: tuple[int, int] | None) -> np.ndarray:
        (path,) = self.task_files(task, image_id)
        what = _WHAT[task]
        if task == "semseg":
            stored = read_png(path, what, "index")
            check_size(path, what, stored, shape)
            return _shift_classes(path, stored)
        array = read_npy(path, what)
        if task == "normals":
            if array.ndim != 3 or array.shape[2] != 3:
                raise _bad_shape(path, what, array, "H×W×3")
            check_size(path, what, array, shape)
            if not np.isfinite(array).all():
                raise DataFileError(f"{what} '{path}' holds non-finite values.", "content", path)
            return array.astype(np.float32, copy=False)
        plane = _plane(path, what, array)
        check_size(path, what, plane, shape)
        if task == "edge":
            return (plane > 0.5).astype(np.uint8)
        depth = np.where(np.isfinite(plane), plane, 0.0).astype(np.float32)
        if (depth < 0).any():
            raise DataFileError(f"{what} '{path}' holds negative depths; expected metres, with "
                                "0 for a missing measurement.", "content", path)
        return depth


def _shift_classes(path: Path, stored: np.ndarray) -> np.ndarray:
    """1..40 → 0..39 and 0 (unlabelled) → 255."""
    if (stored > NUM_SEMSEG_CLASSES).any():
        values = np.unique(stored[stored > NUM_SEMSEG_CLASSES])[:5].tolist()
        raise DataFileError(f"segmentation '{path}' holds class ids {values}; valid: 0 "
                            f"(unlabelled) and 1..{NUM_SEMSEG_CLASSES}.", "content", path)
    return np.where(stored == 0, IGNORE_INDEX, stored - 1).astype(np.uint8)


def _plane(path: Path, what: str, array: np.ndarray) -> np.ndarray:
    if array.ndim == 3 and array.shape[2] == 1:
        return array[..., 0]
    if array.ndim != 2:
        raise _bad_shape(path, what, array, "H×W")
    return array


def _bad_shape(path: Path, what: str, array: np.ndarray, expected: str) -> DataFileError:
    return DataFileError(f"{what} '{path}' has shape {array.shape}; expected {expected}.",
                         "content", path)


@register_dataset
class NyudSource(FolderSource):
    """NYUD-v2, multi-task format (NYUD_MT): semseg, depth, normals, edge."""

    info = NYUD
    description = "NYUD-v2 (NYUD_MT format) from --data-root: semseg, depth, normals, edge"
    layout_class = NyudLayout
