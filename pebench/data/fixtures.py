"""Small datasets written in the real on-disk formats (``pebench data fixture``).

They let users and CI run the real loaders without the download, and the tests check the
loaders against them: each writer first draws the labels in pebench's target conventions
(the *truth*), then encodes them the way the real release stores them (palette and grey
PNGs, PASCAL-Part structs and LabelMaps in .mat files written by scipy, .npy arrays), and
returns the truth with the folder. Images have different sizes, as in PASCAL-Context.

Every split holds people with parts, images without, objects that are not people, both
semseg folders, ignore regions and invalid depths, so every branch of the loaders is used.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pebench.errors import PebenchError
from pebench.task import IGNORE_INDEX

TRAIN_IDS = 6
VAL_IDS = 4
# (height, width) per image, in id order: square and non-square, larger and smaller.
PASCAL_SIZES = ((64, 80), (64, 64), (72, 60), (56, 80), (64, 72), (80, 64),
                (64, 64), (60, 76), (64, 80), (68, 64))
NYUD_SIZES = ((48, 64), (48, 64), (40, 56), (48, 64), (56, 48), (48, 64),
              (48, 64), (40, 56), (48, 48), (48, 64))
JPEG_QUALITY = 95


@dataclass
class Fixture:
    """A written fixture and what it encodes (targets at image size, pebench conventions)."""

    root: Path
    splits: dict[str, list[str]]
    images: dict[str, np.ndarray] = field(default_factory=dict)  # uint8 before JPEG coding
    targets: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)


def write_fixture(dataset: str, root: Path, seed: int = 0) -> Fixture:
    """Write the fixture of ``dataset`` into the new or empty folder ``root``."""
    writers: dict[str, Callable[[Path, int], Fixture]] = {
        "pascal-context": write_pascal_context, "nyud": write_nyud}
    if dataset not in writers:
        raise PebenchError(f"no fixture for dataset '{dataset}'; valid: "
                           f"{', '.join(sorted(writers))}.")
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise PebenchError(f"'{root}' is not an empty directory; give a new or empty one "
                           "(a fixture never writes over existing files).")
    try:
        return writers[dataset](root, seed)
    except OSError as exc:
        raise PebenchError(f"could not write the fixture into '{root}': {exc}.") from exc


def _ids(prefix: str) -> dict[str, list[str]]:
    return {"train": [f"{prefix}{i:06d}" for i in range(TRAIN_IDS)],
            "val": [f"{prefix}{TRAIN_IDS + i:06d}" for i in range(VAL_IDS)]}


def _write_splits(path: Path, splits: dict[str, list[str]]) -> None:
    path.mkdir(parents=True, exist_ok=True)
    for split, ids in splits.items():
        (path / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids), encoding="utf-8")


def _image(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Smooth colour gradients with two flat boxes: JPEG keeps them within a few levels."""
    height, width = shape
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    phase = rng.uniform(0, 2 * np.pi, 3)
    image = np.stack([127 + 100 * np.sin(xx / width * 3 + yy / height * 2 + p) for p in phase],
                     axis=-1)
    for _ in range(2):
        y0, x0 = rng.integers(0, height // 2), rng.integers(0, width // 2)
        image[y0:y0 + height // 3, x0:x0 + width // 3] = rng.integers(30, 225, 3)
    return image.clip(0, 255).astype(np.uint8)


def _save_png(path: Path, array: np.ndarray, palette: bool = False) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    if palette:  # VOC-style: class ids as palette indices, colours only for display
        image = Image.frombytes("P", (array.shape[1], array.shape[0]), array.tobytes())
        image.putpalette([c for i in range(256) for c in (i * 37 % 256, i * 91 % 256, i)])
    else:
        image = Image.fromarray(array)
    image.save(path)


def _save_jpeg(path: Path, image: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    # 4:4:4 chroma, so flat colour boxes keep their colour up to their edges
    Image.fromarray(image).save(path, quality=JPEG_QUALITY, subsampling=0)


def _boxes(rng: np.random.Generator, shape: tuple[int, int], values: list[int],
           background: int, dtype: type = np.uint8) -> np.ndarray:
    """A map of ``background`` with one random box per value, painted in order."""
    height, width = shape
    label = np.full(shape, background, dtype=dtype)
    for value in values:
        y0, x0 = rng.integers(0, height - 8), rng.integers(0, width - 8)
        label[y0:y0 + rng.integers(6, height // 2), x0:x0 + rng.integers(6, width // 2)] = value
    return label


def boundaries_by_pixel(label_map: np.ndarray) -> np.ndarray:
    """The PASCAL edge label, pixel by pixel: 1 where the right or lower neighbour differs.

    Deliberately a plain loop, independent of the loader's vectorised version it checks.
    """
    height, width = label_map.shape
    edges = np.zeros((height, width), dtype=np.uint8)
    for y in range(height):
        for x in range(width):
            right = x + 1 < width and label_map[y, x] != label_map[y, x + 1]
            below = y + 1 < height and label_map[y, x] != label_map[y + 1, x]
            edges[y, x] = right or below
    return edges


# --------------------------------------------------------------------------- PASCAL-Context

_OBJECT = [("class", "O"), ("class_ind", "O"), ("mask", "O"), ("parts", "O")]
_PART = [("part_name", "O"), ("mask", "O")]
# Part names of the two kinds of people a fixture draws, covering all six parts.
_PEOPLE_PARTS = (("hair", "torso", "luarm", "rhand", "ruleg", "lfoot"),
                 ("head", "neck", "ruarm", "llarm", "luleg", "rlleg"))


def _person(rng: np.random.Generator, shape: tuple[int, int], names: tuple[str, ...],
            truth: np.ndarray | None) -> tuple:
    """A person object with one horizontal strip per part (the bottom rows without a part,
    so they stay background), painted into ``truth`` when given."""
    from pebench.data.person_parts import PART_GROUPS, PERSON_CLASS

    height, width = shape
    top, left = rng.integers(0, height // 3), rng.integers(0, width // 2)
    box_height, box_width = height // 2 + 4, width // 3
    mask = np.zeros(shape, dtype=np.uint8)
    mask[top:top + box_height, left:left + box_width] = 1
    strip = (box_height - 2) // max(len(names), 1)
    parts = np.zeros((1, len(names)), dtype=_PART) if names else np.zeros((0, 0))
    for i, name in enumerate(names):
        part_mask = np.zeros(shape, dtype=np.uint8)
        part_mask[top + i * strip:top + (i + 1) * strip, left:left + box_width] = 1
        parts[0, i] = (name, part_mask)
        if truth is not None:
            truth[part_mask.astype(bool)] = PART_GROUPS[name]
    return ("person", np.array([[PERSON_CLASS]], dtype=np.float64), mask, parts)


def _other_object(shape: tuple[int, int], class_ind: int, name: str) -> tuple:
    """A non-person object whose parts share names with person parts (must be ignored)."""
    mask = np.zeros(shape, dtype=np.uint8)
    mask[: shape[0] // 4, -shape[1] // 4:] = 1
    parts = np.zeros((1, 1), dtype=_PART)
    parts[0, 0] = ("head", mask.copy())
    return (name, np.array([[class_ind]], dtype=np.float64), mask, parts)


def _human_parts(rng: np.random.Generator, shape: tuple[int, int], scenario: int,
                 path: Path) -> np.ndarray:
    """Write ``human_parts/<id>.mat`` for one of four scenarios; return its truth.

    0: a person with parts and a dog with a part; 1: two people with parts and one without;
    2: a person without parts and a cat; 3: no object at all.
    """
    import scipy.io

    truth = np.zeros(shape, dtype=np.uint8)
    if scenario == 0:
        objects = [_person(rng, shape, _PEOPLE_PARTS[0], truth), _other_object(shape, 12, "dog")]
    elif scenario == 1:
        objects = [_person(rng, shape, _PEOPLE_PARTS[0], truth),
                   _person(rng, shape, (), None),
                   _person(rng, shape, _PEOPLE_PARTS[1], truth)]
    elif scenario == 2:
        objects = [_person(rng, shape, (), None), _other_object(shape, 8, "cat")]
        truth[:] = IGNORE_INDEX
    else:
        objects = []
        truth[:] = IGNORE_INDEX
    struct = np.zeros((1, len(objects)), dtype=_OBJECT)
    for i, obj in enumerate(objects):
        struct[0, i] = obj
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(str(path), {"anno": {"imname": path.stem, "objects": struct}})
    return truth


def write_pascal_context(root: Path, seed: int = 0) -> Fixture:
    """PASCAL_MT layout; see :mod:`pebench.data.pascal_context`."""
    import scipy.io

    from pebench.data.pascal_context import normals_valid_classes

    splits = _ids("2008_")
    fixture = Fixture(root, splits)
    _write_splits(root / "ImageSets" / "Context", splits)
    valid = sorted(normals_valid_classes())
    invalid = [c for c in range(1, 460) if c not in normals_valid_classes()]
    for k, image_id in enumerate(splits["train"] + splits["val"]):
        rng = np.random.default_rng([seed, k])
        shape = PASCAL_SIZES[k]
        image = _image(rng, shape)
        _save_jpeg(root / "JPEGImages" / f"{image_id}.jpg", image)

        semseg = _boxes(rng, shape, [int(c) for c in rng.integers(1, 21, 4)], 0)
        semseg[:, -3:] = IGNORE_INDEX
        folder = "VOC12" if k % 2 == 0 else "pascal-context"
        _save_png(root / "semseg" / folder / f"{image_id}.png", semseg, palette=k % 2 == 0)

        parts = _human_parts(rng, shape, k % 4, root / "human_parts" / f"{image_id}.mat")

        grey = _boxes(rng, shape, [127, 128, 200, 255, 60], 0)
        _save_png(root / "sal_distill" / f"{image_id}.png", grey)

        classes = [valid[k], invalid[k], valid[k + 10], invalid[k + 10]]
        label_map = _boxes(rng, shape, classes, invalid[20], dtype=np.uint16)
        (root / "pascal-context" / "trainval").mkdir(parents=True, exist_ok=True)
        scipy.io.savemat(str(root / "pascal-context" / "trainval" / f"{image_id}.mat"),
                         {"LabelMap": label_map})
        # Distilled normals are unit vectors facing the camera, stored as (n + 1) · 127.5.
        facing = rng.normal(size=(*shape, 3))
        facing[..., 2] = np.abs(facing[..., 2])
        facing /= np.linalg.norm(facing, axis=-1, keepdims=True)
        rgb = np.round((facing + 1.0) * 127.5).astype(np.uint8)
        _save_png(root / "normals_distill" / f"{image_id}.png", rgb)
        normals = (2.0 * rgb.astype(np.float64) / 255.0 - 1.0).astype(np.float32)
        normals[~np.isin(label_map, valid)] = 0.0

        fixture.images[image_id] = image
        fixture.targets[image_id] = {
            "semseg": semseg, "human_parts": parts, "saliency": (grey >= 128).astype(np.uint8),
            "normals": normals, "edge": boundaries_by_pixel(label_map)}
    return fixture


# ----------------------------------------------------------------------------------- NYUD


def write_nyud(root: Path, seed: int = 0) -> Fixture:
    """NYUD_MT layout; see :mod:`pebench.data.nyud`."""
    splits = _ids("")
    fixture = Fixture(root, splits)
    _write_splits(root / "gt_sets", splits)
    for folder in ("depth", "normals", "edge"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for k, image_id in enumerate(splits["train"] + splits["val"]):
        rng = np.random.default_rng([seed, 1000 + k])
        shape = NYUD_SIZES[k]
        image = _image(rng, shape)
        _save_jpeg(root / "images" / f"{image_id}.jpg", image)

        stored = _boxes(rng, shape, [int(c) for c in rng.integers(1, 41, 4)] + [40], 0)
        stored[0, :] = 1
        _save_png(root / "segmentation" / f"{image_id}.png", stored)

        yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
        depth = (0.5 + 7.5 * (xx + yy) / (shape[0] + shape[1])).astype(np.float32)
        depth[_boxes(rng, shape, [1], 0).astype(bool)] = 0.0
        depth_file = depth.copy()
        depth_file[0, 0] = np.nan  # a non-finite value is a missing measurement
        depth[0, 0] = 0.0
        np.save(root / "depth" / f"{image_id}.npy", depth_file[..., None] if k == 1 else depth_file)

        normals = rng.normal(size=(*shape, 3)).astype(np.float32)
        normals /= np.linalg.norm(normals, axis=-1, keepdims=True)
        normals[_boxes(rng, shape, [1], 0).astype(bool)] = 0.0
        np.save(root / "normals" / f"{image_id}.npy", normals)

        edge = (rng.random(shape) < 0.1).astype(np.float32)
        np.save(root / "edge" / f"{image_id}.npy", edge)

        fixture.images[image_id] = image
        fixture.targets[image_id] = {
            "semseg": np.where(stored == 0, IGNORE_INDEX, stored.astype(np.int64) - 1),
            "depth": depth, "normals": normals, "edge": edge.astype(np.uint8)}
    return fixture
