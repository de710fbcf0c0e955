"""Training augmentation: flips, rotations, scaling and the resize move images, labels and
normal vectors consistently, keep labels in their value sets and pad with ignore."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pebench.data.augment import (
    IDENTITY,
    MAX_ROTATION_DEG,
    SCALE_RANGE,
    Geometry,
    random_geometry,
    warp_image,
    warp_target,
)


def _labels(shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.choice(np.array([0, 3, 7, 255], dtype=np.uint8), size=shape)


def test_identity_at_source_size_changes_nothing() -> None:
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    labels = _labels((32, 32))
    depth = rng.uniform(0.5, 9, (32, 32)).astype(np.float32)
    assert np.array_equal(warp_image(image, IDENTITY, 32), image)
    assert np.array_equal(warp_target(labels, "class", IDENTITY, 32), labels)
    assert np.array_equal(warp_target(depth, "scalar", IDENTITY, 32), depth)


def test_flip_mirrors_everything_and_negates_normal_x() -> None:
    rng = np.random.default_rng(2)
    image = rng.integers(0, 256, (24, 40, 3), dtype=np.uint8)
    labels = _labels((24, 40))
    normals = rng.normal(size=(24, 40, 3)).astype(np.float32)
    flip = Geometry(flip=True)
    # resize 24×40 → 40×40 stretches rows only; compare with the resized unflipped result
    plain_image, plain_labels = warp_image(image, IDENTITY, 40), warp_target(labels, "class",
                                                                             IDENTITY, 40)
    assert np.array_equal(warp_image(image, flip, 40), plain_image[:, ::-1])
    assert np.array_equal(warp_target(labels, "class", flip, 40), plain_labels[:, ::-1])
    plain_normals = warp_target(normals, "direction", IDENTITY, 40)
    flipped = warp_target(normals, "direction", flip, 40)
    np.testing.assert_array_equal(flipped[..., 0], -plain_normals[:, ::-1, 0])
    np.testing.assert_array_equal(flipped[..., 1:], plain_normals[:, ::-1, 1:])


def test_rotation_turns_content_and_normals_the_same_way() -> None:
    """A turn of 90° counter-clockwise (as displayed) moves a spot right of the centre to
    above it, and turns a normal pointing right (x) into one pointing up (-y)."""
    labels = np.zeros((31, 31), dtype=np.uint8)
    labels[15, 25] = 9  # right of the centre pixel (15, 15)
    normals = np.zeros((31, 31, 3), dtype=np.float32)
    normals[..., 0] = 1.0
    turn = Geometry(angle=90.0)
    moved = warp_target(labels, "class", turn, 31)
    assert list(zip(*np.nonzero(moved == 9), strict=True)) == [(5, 15)]
    turned = warp_target(normals, "direction", turn, 31)
    np.testing.assert_allclose(turned[15, 15], [0.0, -1.0, 0.0], atol=1e-6)


@pytest.mark.parametrize("angle", [-20.0, 7.5, 20.0])
def test_rotating_back_restores_the_interior(angle: float) -> None:
    size = 64
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    depth = (1.0 + 0.05 * xx + 0.02 * yy).astype(np.float32)
    normals = np.zeros((size, size, 3), dtype=np.float32)
    normals[..., 0], normals[..., 1], normals[..., 2] = 0.6, 0.0, 0.8
    there = Geometry(angle=angle)
    back = Geometry(angle=-angle)
    restored = warp_target(warp_target(depth, "scalar", there, size), "scalar", back, size)
    turned = warp_target(normals, "direction", there, size)
    restored_normals = warp_target(turned, "direction", back, size)
    interior = (xx - size / 2 + 0.5) ** 2 + (yy - size / 2 + 0.5) ** 2 < (size / 2 - 4) ** 2
    # nearest twice moves a value by at most a pixel or so: the field changes 0.05 per pixel
    assert np.abs(restored - depth)[interior].max() <= 0.11
    theta = math.radians(angle)
    np.testing.assert_allclose(turned[interior][:, :2],
                               np.broadcast_to([0.6 * math.cos(theta), -0.6 * math.sin(theta)],
                                               (int(interior.sum()), 2)), atol=1e-6)
    np.testing.assert_allclose(restored_normals[interior], normals[interior], atol=1e-6)


def test_scaling_zooms_about_the_centre() -> None:
    labels = np.zeros((41, 41), dtype=np.uint8)
    labels[20, 20] = 1
    labels[20, 25] = 2  # five pixels right of the centre
    zoomed = warp_target(labels, "class", Geometry(scale=2.0), 41)
    assert zoomed[20, 20] == 1 and zoomed[20, 30] == 2  # ten pixels right after a 2x zoom


def test_outside_the_source_is_ignore_in_every_label() -> None:
    shrink = Geometry(scale=0.75, angle=20.0)
    labels = np.full((40, 40), 3, dtype=np.uint8)
    depth = np.full((40, 40), 2.5, dtype=np.float32)
    normals = np.zeros((40, 40, 3), dtype=np.float32)
    normals[..., 2] = 1.0
    image = np.full((40, 40, 3), 200, dtype=np.uint8)
    assert warp_target(labels, "class", shrink, 40)[0, 0] == 255
    assert warp_target(depth, "scalar", shrink, 40)[0, 0] == 0.0
    assert np.array_equal(warp_target(normals, "direction", shrink, 40)[0, 0], [0, 0, 0])
    assert np.array_equal(warp_image(image, shrink, 40)[0, 0], [0, 0, 0])
    assert warp_target(labels, "class", shrink, 40)[20, 20] == 3


def test_random_geometry_stays_in_the_published_ranges() -> None:
    rng = np.random.default_rng(0)
    draws = [random_geometry(rng) for _ in range(500)]
    assert all(-MAX_ROTATION_DEG <= g.angle <= MAX_ROTATION_DEG for g in draws)
    assert all(SCALE_RANGE[0] <= g.scale <= SCALE_RANGE[1] for g in draws)
    assert 200 < sum(g.flip for g in draws) < 300


def test_random_warps_keep_labels_in_their_value_set() -> None:
    rng = np.random.default_rng(5)
    labels = _labels((30, 50), seed=5)
    depth = rng.choice(np.array([0.0, 1.5, 4.0], dtype=np.float32), size=(30, 50))
    for _ in range(20):
        geometry = random_geometry(rng)
        assert set(np.unique(warp_target(labels, "class", geometry, 48))) <= {0, 3, 7, 255}
        assert set(np.unique(warp_target(depth, "scalar", geometry, 48))) <= {0.0, 1.5, 4.0}
