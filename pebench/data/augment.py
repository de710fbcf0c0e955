"""Geometric training augmentation and the resize to the input size, for image and labels.

The published PASCAL-Context / NYUD protocol (the ASTMT and MTI-Net loaders that Polyhistor
and MTLoRA reuse) augments a training sample by a horizontal flip (probability 1/2), a
rotation by an angle uniform in ±20° and a scaling by a factor uniform in [0.75, 1.25], both
about the image centre with the canvas kept at the original size, then resizes to the square
input size. Validation samples are only resized.

Here flip, rotation, scaling and resize are composed into one affine map from output pixels
to source pixels and every array is resampled once with it (PIL, per sample, no torch
threads): the image bilinearly, every label with the nearest source pixel, so class ids stay
in their value set and no label is blended with its neighbours or with an ignore region.
Pixels that come from outside the source are black in the image and *ignore* in every
label: 255 for class labels, the zero vector for normals, 0 (invalid) for depth.

Surface normals are vectors in image axes (x right, y down, z towards the camera), so their
components move with the image: a flip negates x, and a rotation of the image content by θ
rotates the (x, y) components by the same θ (the reference loaders do the same). The final
resize to a square is not aspect-preserving; like the reference loaders, the normals are not
corrected for that small anisotropic stretch. Depth values are not changed by the scaling.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from pebench.task import IGNORE_INDEX

TargetKind = Literal["class", "direction", "scalar"]

MAX_ROTATION_DEG = 20.0
SCALE_RANGE = (0.75, 1.25)
FLIP_PROBABILITY = 0.5


@dataclass(frozen=True)
class Geometry:
    """One draw of the augmentation. ``angle`` in degrees, counter-clockwise as displayed."""

    flip: bool = False
    scale: float = 1.0
    angle: float = 0.0


IDENTITY = Geometry()


def random_geometry(rng: np.random.Generator) -> Geometry:
    return Geometry(flip=bool(rng.random() < FLIP_PROBABILITY),
                    scale=float(rng.uniform(*SCALE_RANGE)),
                    angle=float(rng.uniform(-MAX_ROTATION_DEG, MAX_ROTATION_DEG)))


def output_to_source(geometry: Geometry, source_hw: tuple[int, int],
                     size: int) -> np.ndarray:
    """The 3x3 affine map from continuous output coordinates (x, y), pixel centres at
    i + 0.5, of the ``size``×``size`` result to continuous coordinates of the source.

    Forwards, a source point p is flipped (x → W − x), then moved to c + s·R(p − c) about
    the centre c with R = [[cos θ, sin θ], [−sin θ, cos θ]] (a counter-clockwise turn on a
    y-down screen), then stretched by (size/W, size/H). This returns the inverse.
    """
    height, width = source_hw
    cx, cy = width / 2.0, height / 2.0
    theta = math.radians(geometry.angle)
    cos, sin = math.cos(theta), math.sin(theta)
    unresize = np.diag([width / size, height / size, 1.0])
    to_centre = np.array([[1.0, 0.0, -cx], [0.0, 1.0, -cy], [0.0, 0.0, 1.0]])
    inverse_turn = np.array([[cos, -sin, 0.0], [sin, cos, 0.0], [0.0, 0.0, 1.0]])
    unscale = np.diag([1.0 / geometry.scale, 1.0 / geometry.scale, 1.0])
    from_centre = np.array([[1.0, 0.0, cx], [0.0, 1.0, cy], [0.0, 0.0, 1.0]])
    unflip = (np.array([[-1.0, 0.0, width], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
              if geometry.flip else np.eye(3))
    return unflip @ from_centre @ unscale @ inverse_turn @ to_centre @ unresize


def _resample(array: np.ndarray, matrix: np.ndarray, size: int, bilinear: bool,
              fill: float | tuple[int, ...]) -> np.ndarray:
    from PIL import Image

    coefficients = tuple(matrix[:2].reshape(-1).tolist())
    method = Image.Resampling.BILINEAR if bilinear else Image.Resampling.NEAREST
    result = Image.fromarray(array).transform((size, size), Image.Transform.AFFINE,
                                              coefficients, method, fillcolor=fill)
    return np.asarray(result)


def warp_image(image: np.ndarray, geometry: Geometry, size: int) -> np.ndarray:
    """uint8 HxWx3 → uint8 size×size×3, bilinear, black outside the source."""
    matrix = output_to_source(geometry, image.shape[:2], size)
    return _resample(image, matrix, size, bilinear=True, fill=(0, 0, 0))


def warp_target(target: np.ndarray, kind: TargetKind, geometry: Geometry,
                size: int) -> np.ndarray:
    """A label at source size → size×size, nearest source pixel, ignore outside the source.

    ``class`` (class ids, 255 ignore): uint8 HxW → uint8; ``scalar`` (a value per pixel such
    as depth, 0 invalid; values unchanged): float32 HxW → float32; ``direction`` (unit
    vectors such as surface normals, the zero vector ignore): float32 HxWx3 → float32
    size×size×3 with the vector components flipped and rotated.
    """
    matrix = output_to_source(geometry, target.shape[:2], size)
    if kind == "class":
        return _resample(target, matrix, size, bilinear=False, fill=IGNORE_INDEX)
    if kind == "scalar":
        return _resample(target, matrix, size, bilinear=False, fill=0.0)
    channels = [_resample(np.ascontiguousarray(target[..., c]), matrix, size, bilinear=False,
                          fill=0.0) for c in range(3)]
    return rotate_directions(np.stack(channels, axis=-1), geometry)


def rotate_directions(vectors: np.ndarray, geometry: Geometry) -> np.ndarray:
    """Move the (x, y) components of HxWx3 vectors (surface normals) with the image: flip,
    then turn by θ. The zero vector (ignore) stays zero.
    """
    if not geometry.flip and geometry.angle == 0.0:
        return vectors
    x = -vectors[..., 0] if geometry.flip else vectors[..., 0]
    y = vectors[..., 1]
    theta = math.radians(geometry.angle)
    cos, sin = np.float32(math.cos(theta)), np.float32(math.sin(theta))
    turned = np.empty_like(vectors)
    turned[..., 0] = cos * x + sin * y
    turned[..., 1] = -sin * x + cos * y
    turned[..., 2] = vectors[..., 2]
    return turned
