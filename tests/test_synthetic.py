"""Tests of the embedded synthetic dataset, its scene generator and the pretext generator.

The point of the synthetic scenes is that all labels come from one 3-D model, so most tests
check consistency between labels (normals against the depth they come from, saliency against
the semantic map, parts against the person class) rather than just shapes.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Subset

from pebench.data.base import DATASETS
from pebench.data.pretext import GRID, PRETEXT_HEADS, pretext_batch
from pebench.data.scenes import (
    CAMERA_HEIGHT,
    CLASS_NAMES,
    GROUND_EXTENT,
    IGNORE,
    NUM_PART_CLASSES,
    NUM_SEMSEG_CLASSES,
    PART_NAMES,
    PERSON_CLASS,
    PERSON_PROBABILITY,
    generate_scene,
)
from pebench.data.synthetic import TRAIN_SIZE, VAL_SIZE, SyntheticScenes, SyntheticSource
from pebench.data.transforms import IMAGENET_MEAN, IMAGENET_STD, normalize_image
from pebench.errors import PebenchError

ALL_TASKS = ("semseg", "human_parts", "saliency", "normals", "depth")


def _scene(index: int, size: int = 128):
    return generate_scene(np.random.default_rng([123, index]), size)


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _interior(labels: np.ndarray) -> np.ndarray:
    """Pixels (excluding the border) whose 3x3 neighbourhood all carry the same label."""
    centre = labels[1:-1, 1:-1]
    same = np.ones(centre.shape, dtype=bool)
    h, w = labels.shape
    for dy in (0, 1, 2):
        for dx in (0, 1, 2):
            same &= labels[dy:dy + h - 2, dx:dx + w - 2] == centre
    return same


def _fd_normals(height: np.ndarray, pixel_size: float) -> np.ndarray:
    """Normals of the interior pixels by central differences, (3, H-2, W-2)."""
    hx = (height[1:-1, 2:] - height[1:-1, :-2]) / (2 * pixel_size)
    hy = (height[2:, 1:-1] - height[:-2, 1:-1]) / (2 * pixel_size)
    n = np.stack([-hx, -hy, np.ones_like(hx)])
    return n / np.linalg.norm(n, axis=0, keepdims=True)


def _angle_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.degrees(np.arccos(np.clip((a * b).sum(axis=0), -1.0, 1.0)))


# --------------------------------------------------------------------------- registration


def test_registered_with_the_documented_info() -> None:
    assert DATASETS.get("synthetic") is SyntheticSource
    info = SyntheticSource.info
    assert info.tasks == ALL_TASKS
    assert info.default_tasks == ("semseg", "human_parts", "saliency", "normals")
    assert info.num_classes == {"semseg": NUM_SEMSEG_CLASSES, "human_parts": NUM_PART_CLASSES}
    assert NUM_SEMSEG_CLASSES == len(CLASS_NAMES) == 7
    assert NUM_PART_CLASSES == 7
    assert info.default_img_size == 96
    assert not info.needs_root


def test_build_ignores_root_and_train_flag() -> None:
    source = SyntheticSource()
    train = source.build("train", None, 64, ("semseg",), train=True)
    val = source.build("val", None, 64, ("semseg",), train=False)
    assert len(train) == TRAIN_SIZE == 4096
    assert len(val) == VAL_SIZE == 256
    same_a = source.build("val", None, 64, ("semseg",), train=True)[3]
    same_b = source.build("val", None, 64, ("semseg",), train=False)[3]
    assert _same(same_a, same_b)


@pytest.mark.parametrize(("split", "size", "tasks"), [
    ("test", 128, ("semseg",)),
    ("val", 128, ("semseg", "edges")),
    ("val", 16, ("semseg",)),
])
def test_bad_requests_are_refused(split: str, size: int, tasks: tuple[str, ...]) -> None:
    with pytest.raises(PebenchError):
        SyntheticScenes(split, size, tasks)


def test_index_out_of_range() -> None:
    ds = SyntheticScenes("val", 32, ("semseg",))
    with pytest.raises(IndexError):
        ds[VAL_SIZE]
    assert _same(ds[-1], ds[VAL_SIZE - 1])


# --------------------------------------------------------------------------- determinism


def test_same_index_gives_bit_identical_sample() -> None:
    a = SyntheticScenes("train", 64, ALL_TASKS)
    b = SyntheticScenes("train", 64, ALL_TASKS)
    assert _same(a[17], a[17])
    assert _same(a[17], b[17])


def test_different_index_split_or_seed_gives_different_sample() -> None:
    ds = SyntheticScenes("train", 64, ALL_TASKS)
    assert not torch.equal(ds[0]["image"], ds[1]["image"])
    val = SyntheticScenes("val", 64, ALL_TASKS)
    assert not torch.equal(ds[5]["image"], val[5]["image"])
    other_seed = SyntheticScenes("train", 64, ALL_TASKS, seed=1)
    assert not torch.equal(ds[5]["image"], other_seed[5]["image"])


def test_order_and_worker_independence() -> None:
    ds = SyntheticScenes("val", 48, ALL_TASKS)
    indices = list(range(8))
    forward = [ds[i] for i in indices]
    backward = [ds[i] for i in reversed(indices)][::-1]
    assert all(_same(f, b) for f, b in zip(forward, backward, strict=True))
    loader = DataLoader(Subset(ds, indices), batch_size=4, num_workers=2)
    batches = list(loader)
    for task in ("image", *ALL_TASKS):
        stacked = torch.cat([batch[task] for batch in batches])
        assert torch.equal(stacked, torch.stack([s[task] for s in forward]))


# --------------------------------------------------------------------------- format


@pytest.mark.parametrize("size", [32, 75, 128])
def test_shapes_dtypes_and_ranges(size: int) -> None:
    ds = SyntheticScenes("val", size, ALL_TASKS)
    for i in range(6):
        s = ds[i]
        assert set(s) == {"image", *ALL_TASKS}
        assert s["image"].shape == (3, size, size) and s["image"].dtype == torch.float32
        for task in ("semseg", "human_parts", "saliency"):
            assert s[task].shape == (size, size) and s[task].dtype == torch.int64
        assert s["normals"].shape == (3, size, size) and s["normals"].dtype == torch.float32
        assert s["depth"].shape == (1, size, size) and s["depth"].dtype == torch.float32
        assert int(s["semseg"].min()) >= 0 and int(s["semseg"].max()) < NUM_SEMSEG_CLASSES
        parts = s["human_parts"]
        assert bool(((parts >= 0) & (parts < NUM_PART_CLASSES) | (parts == IGNORE)).all())
        assert set(s["saliency"].unique().tolist()) <= {0, 1}
        # the image is an ImageNet-normalised [0, 1] image
        lo = (0.0 - max(IMAGENET_MEAN)) / min(IMAGENET_STD)
        hi = (1.0 - min(IMAGENET_MEAN)) / min(IMAGENET_STD)
        assert lo - 1e-4 <= float(s["image"].min()) and float(s["image"].max()) <= hi + 1e-4


def test_only_requested_tasks_are_returned() -> None:
    s = SyntheticScenes("val", 32, ("depth", "saliency"))[0]
    assert set(s) == {"image", "depth", "saliency"}
    full = SyntheticScenes("val", 32, ALL_TASKS)[0]
    assert torch.equal(s["image"], full["image"]) and torch.equal(s["depth"], full["depth"])


def test_normals_are_unit_and_depth_positive_except_holes() -> None:
    ds = SyntheticScenes("val", 96, ("normals", "depth"))
    hole_fractions = []
    for i in range(20):
        s = ds[i]
        norm = s["normals"].norm(dim=0)
        assert torch.allclose(norm, torch.ones_like(norm), atol=1e-5)
        assert bool((s["normals"][2] > 0).all())  # everything faces the camera
        depth = s["depth"][0]
        valid = depth > 0
        assert bool((depth[valid] >= 1.5).all()) and bool((depth[valid] <= CAMERA_HEIGHT).all())
        assert float(depth[valid].max() - depth[valid].min()) > 3.0  # objects stand out
        hole_fractions.append(1.0 - float(valid.float().mean()))
    # dropout holes exist in some images, and stay small
    assert sum(f > 0 for f in hole_fractions) >= 5
    assert max(hole_fractions) < 0.1


# --------------------------------------------------------------------------- consistency


def test_normals_match_finite_differences_of_the_height_field() -> None:
    for index in range(10):
        scene = _scene(index)
        # a region is smooth where the 3x3 neighbourhood is one surface (instance and part)
        surface = scene.instance.astype(np.int32) * 16 + np.where(
            scene.human_parts == IGNORE, 0, scene.human_parts)
        smooth = _interior(surface)
        fd = _fd_normals(scene.height.astype(np.float64), scene.pixel_size)
        err = _angle_deg(fd, scene.normals[:, 1:-1, 1:-1].astype(np.float64))[smooth]
        assert smooth.mean() > 0.8
        assert np.median(err) < 0.2 and np.percentile(err, 99) < 2.0, index
        # and the sign convention is not vacuous: the surfaces do tilt
        assert np.percentile(_angle_deg(fd, np.array([0, 0, 1.0])[:, None, None]), 99) > 10


def test_returned_normals_match_finite_differences_of_returned_depth() -> None:
    ds = SyntheticScenes("val", 128, ALL_TASKS)
    errors = []
    for i in range(10):
        s = ds[i]
        depth = s["depth"][0].numpy().astype(np.float64)
        labels = s["semseg"].numpy() * 16 + np.where(
            s["human_parts"].numpy() == IGNORE, 0, s["human_parts"].numpy())
        smooth = _interior(labels) & _interior((depth > 0).astype(np.int64))
        smooth &= (depth > 0)[1:-1, 1:-1]
        fd = _fd_normals(CAMERA_HEIGHT - depth, GROUND_EXTENT / 128)
        errors.append(_angle_deg(fd, s["normals"].numpy()[:, 1:-1, 1:-1])[smooth])
    err = np.concatenate(errors)
    assert np.median(err) < 0.5 and np.percentile(err, 95) < 2.0


def test_normal_signs_follow_the_image_axes() -> None:
    # Where the surface rises to the right (depth falls to the right) the normal faces left,
    # where it rises downwards the normal faces up the image (negative y).
    scene = _scene(3)
    hx = np.gradient(scene.height.astype(np.float64), axis=1)
    hy = np.gradient(scene.height.astype(np.float64), axis=0)
    smooth = np.zeros(scene.height.shape, dtype=bool)
    smooth[1:-1, 1:-1] = _interior(scene.instance)
    steep_x = smooth & (np.abs(hx) > 1e-3)
    steep_y = smooth & (np.abs(hy) > 1e-3)
    assert steep_x.sum() > 100 and steep_y.sum() > 100
    assert np.mean(np.sign(scene.normals[0][steep_x]) == -np.sign(hx[steep_x])) > 0.99
    assert np.mean(np.sign(scene.normals[1][steep_y]) == -np.sign(hy[steep_y])) > 0.99


def test_saliency_is_the_highest_object() -> None:
    for index in range(30):
        scene = _scene(index, 96)
        salient = scene.saliency.astype(bool)
        assert salient.any()
        ids = np.unique(scene.instance[salient])
        assert ids.size == 1 and ids[0] > 0  # exactly one object ...
        assert np.array_equal(salient, scene.instance == ids[0])  # ... all its visible pixels
        objects = scene.instance > 0
        assert scene.height[salient].max() == scene.height[objects].max()
        assert (scene.semseg[salient] > 0).all()


def test_saliency_subset_of_objects_in_samples() -> None:
    ds = SyntheticScenes("val", 64, ("semseg", "saliency"))
    for i in range(20):
        s = ds[i]
        salient = s["saliency"] == 1
        assert bool(salient.any())
        assert bool((s["semseg"][salient] > 0).all())
        assert s["semseg"][salient].unique().numel() == 1  # one object, hence one class


def test_human_parts_agree_with_person_pixels() -> None:
    ds = SyntheticScenes("train", 64, ("semseg", "human_parts"))
    with_person = 0
    n = 200
    for i in range(n):
        s = ds[i]
        person = s["semseg"] == PERSON_CLASS
        parts = s["human_parts"]
        if person.any():
            with_person += 1
            assert not bool((parts == IGNORE).any())
            assert torch.equal(parts > 0, person)
        else:
            assert bool((parts == IGNORE).all())
    assert abs(with_person - PERSON_PROBABILITY * n) <= 0.1 * n  # 4 binomial std


def test_people_stand_head_up() -> None:
    """Every visible person's head lies above (smaller y than) its lower legs."""
    checked = 0
    for i in range(150):
        parts = generate_scene(np.random.default_rng([0, 0, i]), 64).human_parts
        head_rows = np.nonzero(parts == PART_NAMES.index("head"))[0]
        feet_rows = np.nonzero(parts == PART_NAMES.index("lower_leg"))[0]
        if head_rows.size and feet_rows.size:
            checked += 1
            assert head_rows.mean() < feet_rows.mean(), i
    assert checked >= 70


def test_every_class_and_part_occurs_in_val() -> None:
    ds = SyntheticScenes("val", 64, ("semseg", "human_parts", "saliency"))
    classes: set[int] = set()
    parts: set[int] = set()
    salient_classes: set[int] = set()
    for i in range(len(ds)):
        s = ds[i]
        classes |= set(s["semseg"].unique().tolist())
        parts |= set(s["human_parts"].unique().tolist())
        salient_classes |= set(s["semseg"][s["saliency"] == 1].unique().tolist())
    assert classes == set(range(NUM_SEMSEG_CLASSES))
    assert parts - {IGNORE} == set(range(NUM_PART_CLASSES))
    assert salient_classes == set(range(1, NUM_SEMSEG_CLASSES))


def test_scene_is_the_same_at_every_resolution() -> None:
    # parameters are drawn in metres, so a finer image shows the same scene in more detail
    agreements = []
    for index in range(8):
        coarse = _scene(index, 64)
        fine = _scene(index, 128)
        # pixel i of the 64 grid sits between pixels 2i and 2i+1 of the 128 grid; compare
        # with both neighbours so edge pixels count as agreeing with either side
        match = (coarse.semseg == fine.semseg[::2, ::2]) | (coarse.semseg == fine.semseg[1::2,
                                                                                        1::2])
        agreements.append(match.mean())
    assert min(agreements) > 0.97


def test_semantic_class_is_not_a_function_of_colour() -> None:
    # A lookup table from quantised pixel colour to the most frequent class, fitted on one
    # set of scenes, must not segment new scenes well: the classes share colours, so shape,
    # texture and context are needed.
    def pixels(split: str, n: int) -> tuple[np.ndarray, np.ndarray]:
        ds = SyntheticScenes(split, 64, ("semseg",))
        keys, labels = [], []
        for i in range(n):
            s = ds[i]
            rgb = s["image"] * torch.tensor(IMAGENET_STD)[:, None, None] + torch.tensor(
                IMAGENET_MEAN)[:, None, None]
            q = (rgb.clamp(0, 1) * 7.999).long()
            keys.append((q[0] * 64 + q[1] * 8 + q[2]).flatten().numpy())
            labels.append(s["semseg"].flatten().numpy())
        return np.concatenate(keys), np.concatenate(labels)

    keys, labels = pixels("train", 150)
    table = np.zeros((512, NUM_SEMSEG_CLASSES), dtype=np.int64)
    np.add.at(table, (keys, labels), 1)
    lookup = table.argmax(axis=1)
    keys, labels = pixels("val", 60)
    objects = labels > 0
    accuracy = (lookup[keys[objects]] == labels[objects]).mean()
    assert accuracy < 0.5


# --------------------------------------------------------------------------- transforms


def test_normalize_image_uint8_and_float_agree() -> None:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    a = normalize_image(img)
    b = normalize_image(img.astype(np.float32) / 255.0)
    assert a.shape == (3, 5, 7) and a.dtype == torch.float32
    assert torch.allclose(a, b, atol=1e-6)
    expected = (img[2, 3, 1] / 255.0 - IMAGENET_MEAN[1]) / IMAGENET_STD[1]
    assert a[1, 2, 3].item() == pytest.approx(expected, abs=1e-6)
    with pytest.raises(ValueError):
        normalize_image(img.astype(np.int32))
    with pytest.raises(ValueError):
        normalize_image(img[..., :2])


# --------------------------------------------------------------------------- pretext


def test_pretext_batch_format_and_determinism() -> None:
    images, labels = pretext_batch(np.random.default_rng(7), 16, 64)
    again_images, again_labels = pretext_batch(np.random.default_rng(7), 16, 64)
    other_images, _ = pretext_batch(np.random.default_rng(8), 16, 64)
    assert torch.equal(images, again_images)
    assert all(torch.equal(labels[k], again_labels[k]) for k in labels)
    assert not torch.equal(images, other_images)
    assert images.shape == (16, 3, 64, 64) and images.dtype == torch.float32
    assert set(labels) == set(PRETEXT_HEADS)
    for head, (granularity, n) in PRETEXT_HEADS.items():
        shape = (16, GRID, GRID) if granularity == "cell" else (16,)
        assert labels[head].shape == shape and labels[head].dtype == torch.int64
        assert int(labels[head].min()) >= 0 and int(labels[head].max()) < n
    # the occupied cells are exactly the counted shapes, and shape and colour agree on them
    occupied = (labels["cell_shape"] > 0).flatten(1)
    assert torch.equal(occupied.sum(dim=1), labels["count"] + 1)
    assert torch.equal(occupied, (labels["cell_colour"] > 0).flatten(1))


def test_pretext_every_class_occurs() -> None:
    rng = np.random.default_rng(0)
    batches = [pretext_batch(rng, 50, 32)[1] for _ in range(8)]
    for head in PRETEXT_HEADS:
        values = torch.cat([b[head] for b in batches])
        assert set(values.unique().tolist()) == set(range(PRETEXT_HEADS[head][1]))


def test_pretext_textures_are_distinguishable() -> None:
    # The background family must show in the pixels: along the top strip of the image, which
    # shapes rarely reach, a plain background is flat (only sensor noise) and stripes are not.
    images, labels = pretext_batch(np.random.default_rng(3), 64, 64)
    rows = images[:, :, :4, :].flatten(2).std(dim=2).mean(dim=1)  # per channel, then mean
    plain = labels["texture"] == 5
    stripes = labels["texture"] == 0
    assert plain.any() and stripes.any()
    assert float(rows[stripes].median()) > 2 * float(rows[plain].median())
