"""PASCAL-Part person annotations: the part map of one image, and which images have one.

PASCAL_MT stores one ``human_parts/<id>.mat`` per image in the PASCAL-Part layout (read with
``scipy.io.loadmat``): the struct ``anno`` (1×1) has the fields ``imname`` and ``objects``, a
1×N struct array whose elements have ``class`` (name), ``class_ind`` (the VOC category, 15 for
person), ``mask`` (the instance's 0/1 mask) and ``parts``, a 1×M struct array (empty when the
object has no part annotation) of ``part_name`` and ``mask``.

The multi-task benchmark groups the 24 person part names into 6 parts; every person that
has parts is painted into one map (later parts over earlier ones, as the reference loader
does), pixels outside them are background (0). An image without any person that has parts
has no human-parts label at all: its target is all 255 (ignore), not background, so it
neither rewards nor punishes a prediction.

Knowing which images have such a person needs every .mat file opened once (thousands of
files), so the answer is cached in the user's cache directory, keyed by the split's ids and
the files' sizes and modification times; the dataset folder is never written to.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from pebench.atomic import atomic_write_text
from pebench.cache import cache_dir
from pebench.data.files import DataFileError, check_size, read_mat
from pebench.task import IGNORE_INDEX

PERSON_CLASS = 15
# Part name -> one of 6 parts (1 head, 2 torso, 3 upper arms, 4 lower arms and hands,
# 5 upper legs, 6 lower legs and feet), the grouping of the PASCAL_MT benchmark.
PART_GROUPS: dict[str, int] = {
    **dict.fromkeys(("hair", "head", "lear", "lebrow", "leye", "mouth", "nose", "rear",
                     "rebrow", "reye"), 1),
    **dict.fromkeys(("neck", "torso"), 2),
    **dict.fromkeys(("luarm", "ruarm"), 3),
    **dict.fromkeys(("lhand", "llarm", "rhand", "rlarm"), 4),
    **dict.fromkeys(("luleg", "ruleg"), 5),
    **dict.fromkeys(("lfoot", "llleg", "rfoot", "rlleg"), 6),
}
NUM_PARTS = 6
WHAT = "human-parts annotation"
_INDEX_VERSION = 1


def _layout_error(path: Path) -> DataFileError:
    return DataFileError(f"{WHAT} '{path}' is not in the PASCAL-Part layout (a struct 'anno' "
                         "whose 'objects' have class_ind, mask and parts with part_name and "
                         "mask).", "content", path)


def _person_parts(path: Path) -> list[tuple[str, np.ndarray]]:
    """(part name, mask) of every part of every person in the annotation, in file order."""
    anno = read_mat(path, WHAT, "anno")
    found = []
    try:
        objects = anno[0, 0]["objects"]
        for obj in objects.ravel() if objects.size else ():
            parts = obj["parts"]
            if int(np.asarray(obj["class_ind"]).ravel()[0]) != PERSON_CLASS or not parts.size:
                continue
            found += [(str(np.asarray(part["part_name"]).ravel()[0]), np.asarray(part["mask"]))
                      for part in parts.ravel()]
    except (IndexError, ValueError, KeyError, TypeError) as exc:
        raise _layout_error(path) from exc
    return found


def has_person_parts(path: Path) -> bool:
    return bool(_person_parts(path))


def read_person_parts(path: Path, shape: tuple[int, int] | None) -> np.ndarray | None:
    """The uint8 part map (0 background, 1..6 parts) of every person with parts, or None
    when the image has no such person. Masks must be of the image's ``shape``."""
    target: np.ndarray | None = None
    for name, mask in _person_parts(path):
        check_size(path, WHAT, mask, shape)
        if name not in PART_GROUPS:
            raise DataFileError(f"{WHAT} '{path}' names an unknown person part '{name}'; "
                                f"known: {', '.join(sorted(PART_GROUPS))}.", "content", path)
        if target is None:
            target = np.zeros(mask.shape[:2], dtype=np.uint8)
        elif mask.shape != target.shape:
            raise DataFileError(f"{WHAT} '{path}' has part masks of different sizes.",
                                "size", path)
        target[mask.astype(bool)] = PART_GROUPS[name]
    return target


def read_human_parts(path: Path, shape: tuple[int, int] | None) -> np.ndarray:
    """The human-parts target of an image: its part map, or all ignore (of ``shape``; 0×0
    when no size is known) without a person with parts."""
    target = read_person_parts(path, shape)
    if target is not None:
        return target
    return np.full(shape if shape is not None else (0, 0), IGNORE_INDEX, dtype=np.uint8)


def person_parts_index(ids: list[str], annotation: Callable[[str], Path]) -> frozenset[str]:
    """The ids whose annotation has a person with parts, from the cache when the files have
    not changed since it was written."""
    key = _content_key(ids, annotation)
    cached = cache_dir() / "datasets" / "pascal-context" / f"person-parts-{key}.json"
    if cached.is_file():
        try:
            return frozenset(json.loads(cached.read_text(encoding="utf-8"))["with_parts"])
        except (OSError, ValueError, KeyError, TypeError):
            pass  # a damaged cache entry is rebuilt below
    with_parts = sorted(i for i in ids if has_person_parts(annotation(i)))
    atomic_write_text(cached, json.dumps({"version": _INDEX_VERSION, "with_parts": with_parts}))
    return frozenset(with_parts)


def _content_key(ids: list[str], annotation: Callable[[str], Path]) -> str:
    digest = hashlib.sha256(f"person-parts v{_INDEX_VERSION}\n".encode())
    for image_id in ids:
        stat = annotation(image_id).stat()
        digest.update(f"{image_id}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:24]
