"""PASCAL-Context in the multi-task format of PASCAL_MT (``--dataset pascal-context``).

Layout under ``--data-root`` (the extracted PASCAL_MT folder)::

    JPEGImages/<id>.jpg
    ImageSets/Context/train.txt, val.txt        4,998 / 5,105 ids
    semseg/VOC12/<id>.png                       21 classes (0 background), 255 ignore;
    semseg/pascal-context/<id>.png              used where no VOC12 file exists
    human_parts/<id>.mat                        PASCAL-Part annotation (person_parts.py)
    sal_distill/<id>.png                        grey; salient where value / 255 > 0.5
    normals_distill/<id>.png                    RGB; normal = 2 · value / 255 − 1
    pascal-context/trainval/<id>.mat            ``LabelMap``: PASCAL-Context class per pixel

The distilled normals are only trusted on classes that NYUD (their teacher's training set)
also has: elsewhere they become the zero vector, pebench's ignore value. The edge label is
the boundary of the ``LabelMap`` regions (see :func:`label_boundaries`).
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from pathlib import Path
from typing import ClassVar

import numpy as np

from pebench.data.augment import TargetKind
from pebench.data.base import register_dataset
from pebench.data.files import DataFileError, check_size, read_mat, read_png, read_split
from pebench.data.folder import FolderLayout, FolderSource
from pebench.data.infos import PASCAL_CONTEXT
from pebench.data.person_parts import person_parts_index, read_human_parts
from pebench.task import IGNORE_INDEX

NUM_SEMSEG_CLASSES = PASCAL_CONTEXT.num_classes["semseg"]
_MAPS = "pascal_context_maps"
_HINT = ("--data-root must be the extracted PASCAL_MT folder (with JPEGImages/, ImageSets/"
         "Context/, semseg/, human_parts/, sal_distill/, normals_distill/, pascal-context/).")


@cache
def normals_valid_classes() -> frozenset[int]:
    """LabelMap ids whose distilled normals are kept: the PASCAL-Context classes that NYUD
    also has (by name, ``unknown`` excluded), plus ``tvmonitor`` (NYUD calls it otherwise)."""
    maps = resources.files("pebench.data") / _MAPS
    context: dict[str, int] = json.loads((maps / "context_classes.json").read_text("utf-8"))
    nyu: dict[str, int] = json.loads((maps / "nyu_classes.json").read_text("utf-8"))
    shared = {context[name] for name in nyu if name in context and name != "unknown"}
    return frozenset({*shared, context["tvmonitor"]})


def label_boundaries(label_map: np.ndarray) -> np.ndarray:
    """uint8 edge map: 1 where a pixel's class differs from its right or lower neighbour.

    One pixel wide, on the upper / left side of each boundary. The reference loaders take
    the non-zero Laplacian of the LabelMap and thin it morphologically, which gives a
    one-pixel line at about the same place; pebench avoids the image-processing dependency.
    """
    edges = np.zeros(label_map.shape, dtype=bool)
    edges[:, :-1] |= label_map[:, :-1] != label_map[:, 1:]
    edges[:-1, :] |= label_map[:-1, :] != label_map[1:, :]
    return edges.astype(np.uint8)


class PascalContextLayout(FolderLayout):
    dataset = PASCAL_CONTEXT.name
    expected_sizes: ClassVar[dict[str, int]] = {"train": 4998, "val": 5105}
    kinds: ClassVar[dict[str, TargetKind]] = {
        "semseg": "class", "human_parts": "class", "saliency": "class", "normals": "direction",
        "edge": "class"}

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self._with_person_parts: frozenset[str] | None = None
        # normals and edge both read an image's LabelMap: decode it once per image
        self._last_label_map: tuple[str, np.ndarray] | None = None

    def split_ids(self, split: str) -> list[str]:
        return read_split(self.root / "ImageSets" / "Context" / f"{split}.txt", _HINT)

    def image_path(self, image_id: str) -> Path:
        return self.root / "JPEGImages" / f"{image_id}.jpg"

    def semseg_path(self, image_id: str) -> Path:
        voc = self.root / "semseg" / "VOC12" / f"{image_id}.png"
        return voc if voc.is_file() else self.root / "semseg" / "pascal-context" / f"{image_id}.png"

    def parts_path(self, image_id: str) -> Path:
        return self.root / "human_parts" / f"{image_id}.mat"

    def saliency_path(self, image_id: str) -> Path:
        return self.root / "sal_distill" / f"{image_id}.png"

    def normals_path(self, image_id: str) -> Path:
        return self.root / "normals_distill" / f"{image_id}.png"

    def label_map_path(self, image_id: str) -> Path:
        return self.root / "pascal-context" / "trainval" / f"{image_id}.mat"

    def task_files(self, task: str, image_id: str) -> list[Path]:
        if task == "semseg":
            return [self.semseg_path(image_id)]
        if task == "human_parts":
            return [self.parts_path(image_id)]
        if task == "saliency":
            return [self.saliency_path(image_id)]
        if task == "normals":
            return [self.normals_path(image_id), self.label_map_path(image_id)]
        if task == "edge":
            return [self.label_map_path(image_id)]
        raise KeyError(task)

    def prepare(self, ids: list[str], tasks: tuple[str, ...]) -> None:
        """Find the images with a person that has parts once (cached), so that loading skips
        the .mat files of the others."""
        if "human_parts" in tasks:
            self._with_person_parts = person_parts_index(ids, self.parts_path)

    def read_target(self, task: str, image_id: str,
                    shape: tuple[int, int] | None) -> np.ndarray:
        if task == "semseg":
            return self._semseg(image_id, shape)
        if task == "human_parts":
            return self._human_parts(image_id, shape)
        if task == "saliency":
            path = self.saliency_path(image_id)
            grey = read_png(path, "saliency map", "gray")
            check_size(path, "saliency map", grey, shape)
            return (grey.astype(np.float32) / 255.0 > 0.5).astype(np.uint8)
        if task == "normals":
            return self._normals(image_id, shape)
        if task == "edge":
            return label_boundaries(self._label_map(image_id, shape))
        raise KeyError(task)

    def _semseg(self, image_id: str, shape: tuple[int, int] | None) -> np.ndarray:
        path = self.semseg_path(image_id)
        label = read_png(path, "semseg label", "index")
        check_size(path, "semseg label", label, shape)
        bad = (label >= NUM_SEMSEG_CLASSES) & (label != IGNORE_INDEX)
        if bad.any():
            values = np.unique(label[bad])[:5].tolist()
            raise DataFileError(f"semseg label '{path}' holds class ids {values}; valid: "
                                f"0..{NUM_SEMSEG_CLASSES - 1} and {IGNORE_INDEX} (ignore).",
                                "content", path)
        return label

    def _human_parts(self, image_id: str, shape: tuple[int, int] | None) -> np.ndarray:
        if (shape is not None and self._with_person_parts is not None
                and image_id not in self._with_person_parts):
            return np.full(shape, IGNORE_INDEX, dtype=np.uint8)
        return read_human_parts(self.parts_path(image_id), shape)

    def _normals(self, image_id: str, shape: tuple[int, int] | None) -> np.ndarray:
        path = self.normals_path(image_id)
        rgb = read_png(path, "distilled normals", "rgb")
        check_size(path, "distilled normals", rgb, shape)
        label_map = self._label_map(image_id, (rgb.shape[0], rgb.shape[1]))
        normals = 2.0 * rgb.astype(np.float32) / 255.0 - 1.0
        valid = np.isin(label_map, np.fromiter(normals_valid_classes(), dtype=np.int64))
        normals[~valid] = 0.0
        return normals

    def _label_map(self, image_id: str, shape: tuple[int, int] | None) -> np.ndarray:
        path = self.label_map_path(image_id)
        if self._last_label_map is not None and self._last_label_map[0] == image_id:
            label_map = self._last_label_map[1]
            check_size(path, "PASCAL-Context label map", label_map, shape)
            return label_map
        label_map = read_mat(path, "PASCAL-Context label map", "LabelMap")
        integral = np.issubdtype(label_map.dtype, np.integer) or (
            np.issubdtype(label_map.dtype, np.floating) and np.array_equal(
                label_map, np.round(label_map)))
        if label_map.ndim != 2 or not integral:
            raise DataFileError(f"PASCAL-Context label map '{path}' holds a {label_map.dtype} "
                                f"array of shape {label_map.shape}; expected a 2-D LabelMap of "
                                "class ids.", "content", path)
        check_size(path, "PASCAL-Context label map", label_map, shape)
        label_map = label_map.astype(np.int64, copy=False)
        self._last_label_map = (image_id, label_map)
        return label_map


@register_dataset
class PascalContextSource(FolderSource):
    """PASCAL-Context, multi-task format (PASCAL_MT): semseg, human parts, saliency, normals,
    edge."""

    info = PASCAL_CONTEXT
    description = ("PASCAL-Context (PASCAL_MT format) from --data-root: semseg, human_parts, "
                   "saliency, normals, edge")
    layout_class = PascalContextLayout
