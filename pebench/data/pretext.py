"""A pretext task for pretraining the small backbone: labels of textured-shape images.

Why a separate generator: pretraining on the benchmark's own scenes or tasks would leak the
downstream labels into the "pretrained" weights and flatter every method. This task is
deliberately disjoint from the dense tasks (no geometry, no per-pixel labels, different
shapes and textures), yet it needs the same ingredients a dense-prediction backbone wants:
local texture statistics (the background texture), shape recognition at several scales (the
shape families) and spatial reasoning over the whole image (counting objects).

Each image has a textured background and 1 to 4 flat, solid-coloured shapes, one per cell of
a 2x2 grid so they never overlap and the count is unambiguous. The heads (``PRETEXT_HEADS``):

* ``cell_shape`` (per cell): 0 = empty, else 1 + the family in ``PRETEXT_SHAPES``;
* ``cell_colour`` (per cell): 0 = empty, else 1 + the hue in ``PRETEXT_COLOURS``;
* ``texture`` (per image): the background family, one of ``PRETEXT_TEXTURES``;
* ``count`` (per image): number of shapes minus one (class k means k + 1 shapes).

The per-cell labels matter: a purely global pretext (which shapes are present anywhere)
teaches features that discard where things are and what colour they have, and such a
backbone transfers to dense prediction worse than random weights. Asking what is in each cell,
and its colour, keeps the features local and colour-aware while sharing no label with the
dense tasks.

Whole batches are generated at once with numpy (textures grouped by family, shapes grouped by
family), so a batch of 16 images at 128x128 takes a few milliseconds.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from pebench.data.scenes import smooth_noise_weights
from pebench.data.transforms import IMAGENET_MEAN, IMAGENET_STD

PRETEXT_SHAPES: tuple[str, ...] = ("disc", "square", "triangle", "cross", "ring", "crescent",
                                   "bar", "ell")
PRETEXT_TEXTURES: tuple[str, ...] = ("stripes", "checkerboard", "dots", "noise", "gradient",
                                     "plain")
PRETEXT_COLOURS: tuple[str, ...] = ("red", "orange", "yellow", "green", "cyan", "blue",
                                    "purple", "magenta")
MAX_SHAPES = 4
GRID = 2
# name -> (granularity, number of classes); "cell" labels are (B, GRID, GRID), "image" (B,).
PRETEXT_HEADS: dict[str, tuple[str, int]] = {
    "cell_shape": ("cell", 1 + len(PRETEXT_SHAPES)),
    "cell_colour": ("cell", 1 + len(PRETEXT_COLOURS)),
    "texture": ("image", len(PRETEXT_TEXTURES)),
    "count": ("image", MAX_SHAPES),
}
_HUES = np.array([0.0, 30.0, 55.0, 120.0, 180.0, 225.0, 275.0, 310.0], dtype=np.float32)
MIN_SIZE = 32

_MEAN = np.array(IMAGENET_MEAN, dtype=np.float32).reshape(1, 3, 1, 1)
_STD = np.array(IMAGENET_STD, dtype=np.float32).reshape(1, 3, 1, 1)
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


@lru_cache(maxsize=16)
def _unit_coords(size: int) -> np.ndarray:
    """Pixel centres in [0, 1] along one axis."""
    coords = ((np.arange(size, dtype=np.float32) + 0.5) / size)
    coords.setflags(write=False)
    return coords


def _texture_pattern(rng: np.random.Generator, kind: int, n: int, size: int) -> np.ndarray:
    """(n, size, size) blend weights in [0, 1] for ``n`` backgrounds of one family."""
    x = _unit_coords(size)[None, None, :]
    y = _unit_coords(size)[None, :, None]
    angle = rng.uniform(0.0, np.pi, (n, 1, 1)).astype(np.float32)
    period = rng.uniform(0.06, 0.16, (n, 1, 1)).astype(np.float32)
    u = np.cos(angle) * x + np.sin(angle) * y
    v = np.cos(angle) * y - np.sin(angle) * x
    name = PRETEXT_TEXTURES[kind]
    if name == "stripes":
        return (np.sin(u * (2 * np.pi / period)) > 0).astype(np.float32)
    if name == "checkerboard":
        return ((np.floor(u / period) + np.floor(v / period)) % 2).astype(np.float32)
    if name == "dots":
        wave = (np.cos(u * (2 * np.pi / period)) + 1) * (np.cos(v * (2 * np.pi / period)) + 1)
        return (wave > 2.4).astype(np.float32)
    if name == "noise":
        m = smooth_noise_weights(size, 5)
        lattice = rng.standard_normal((n, 6, 6)).astype(np.float32)
        return np.clip(0.5 + 0.9 * (m @ lattice @ m.T), 0.0, 1.0)
    if name == "gradient":
        return np.clip(0.5 + 1.2 * (u - u.mean(axis=(1, 2), keepdims=True)), 0.0, 1.0)
    return np.zeros((n, size, size), dtype=np.float32)  # plain


def _shape_mask(family: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Inside-test of one family in object coordinates (the shape fits the unit disc)."""
    name = PRETEXT_SHAPES[family]
    au, av = np.abs(u), np.abs(v)
    if name == "disc":
        return u * u + v * v <= 0.85**2
    if name == "square":
        return np.maximum(au, av) <= 0.68
    if name == "triangle":
        inside = np.ones(u.shape, dtype=bool)
        for k in range(3):
            ang = np.pi / 2 + 2 * np.pi / 3 * k
            inside &= np.float32(np.cos(ang)) * u + np.float32(np.sin(ang)) * v <= 0.5
        return inside
    if name == "cross":
        return ((au <= 0.95) & (av <= 0.3)) | ((au <= 0.3) & (av <= 0.95))
    if name == "ring":
        r2 = u * u + v * v
        return (r2 <= 0.95**2) & (r2 >= 0.55**2)
    if name == "crescent":
        return (u * u + v * v <= 0.95**2) & ((u - 0.45) ** 2 + v * v >= 0.75**2)
    if name == "bar":
        return (au <= 0.95) & (av <= 0.28)
    return (au <= 0.7) & (av <= 0.7) & ((u <= -0.2) | (v >= 0.2))  # ell


def pretext_batch(rng: np.random.Generator, batch_size: int,
                  img_size: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """A batch of pretext images and their labels, fully determined by ``rng``.

    Returns normalised images (B, 3, S, S) float32 and int64 labels keyed by
    ``PRETEXT_HEADS``: (B, GRID, GRID) for cell heads, (B,) for image heads.
    """
    if img_size < MIN_SIZE:
        raise ValueError(f"pretext images must be at least {MIN_SIZE} pixels, got {img_size}")
    b, s = batch_size, img_size
    cell = s // 2

    # background: two colours blended by a family-specific pattern
    # (channel-first throughout: numpy is much faster with the long axis innermost)
    texture = rng.integers(len(PRETEXT_TEXTURES), size=b)
    c0 = rng.uniform(0.05, 0.95, (b, 3, 1, 1)).astype(np.float32)
    c1 = rng.uniform(0.05, 0.95, (b, 3, 1, 1)).astype(np.float32)
    pattern = np.empty((b, 1, s, s), dtype=np.float32)
    for kind in range(len(PRETEXT_TEXTURES)):
        idx = np.flatnonzero(texture == kind)
        if idx.size:
            pattern[idx, 0] = _texture_pattern(rng, kind, idx.size, s)
    images = c0 + pattern * (c1 - c0)

    # shapes: 1..4 per image, each alone in one cell of a 2x2 grid
    count = rng.integers(1, MAX_SHAPES + 1, size=b)
    n_obj = int(count.sum())
    owner = np.repeat(np.arange(b), count)
    cells = np.concatenate([rng.permutation(4)[:k] for k in count])
    family = rng.integers(len(PRETEXT_SHAPES), size=n_obj)
    radius = rng.uniform(0.28, 0.46, n_obj) * cell
    slack = np.maximum(0.5 * cell - radius, 0.0)
    centre = 0.5 * cell + rng.uniform(-1.0, 1.0, (n_obj, 2)) * slack[:, None]
    theta = rng.uniform(0.0, 2.0 * np.pi, n_obj)
    hue = rng.integers(len(PRETEXT_COLOURS), size=n_obj)
    colour = _hue_to_rgb(_HUES[hue] + rng.uniform(-8.0, 8.0, n_obj).astype(np.float32),
                         rng.uniform(0.6, 1.0, n_obj).astype(np.float32))
    # keep every shape visible: darken it on bright backgrounds (its hue stays the same)
    bg_mean = c0[:, :, 0, 0] + pattern.mean(axis=(1, 2, 3))[:, None] * (c1 - c0)[:, :, 0, 0]
    bg_luma = bg_mean @ _LUMA
    dark = bg_luma[owner] > 0.5
    colour = np.where(dark[:, None], 0.45 * colour, colour).astype(np.float32)

    pix = np.arange(cell, dtype=np.float32) + 0.5
    dx = (pix[None, None, :] - centre[:, 0, None, None]) / radius[:, None, None]
    dy = (pix[None, :, None] - centre[:, 1, None, None]) / radius[:, None, None]
    cos_t = np.cos(theta)[:, None, None].astype(np.float32)
    sin_t = np.sin(theta)[:, None, None].astype(np.float32)
    u = (cos_t * dx + sin_t * dy).astype(np.float32)
    v = (cos_t * dy - sin_t * dx).astype(np.float32)
    masks = np.empty((n_obj, cell, cell), dtype=bool)
    for f in range(len(PRETEXT_SHAPES)):
        idx = np.flatnonzero(family == f)
        if idx.size:
            masks[idx] = _shape_mask(f, u[idx], v[idx])
    for k in range(n_obj):
        r0, c0_ = (cells[k] // 2) * cell, (cells[k] % 2) * cell
        view = images[owner[k], :, r0:r0 + cell, c0_:c0_ + cell]
        np.copyto(view, colour[k][:, None, None], where=masks[k][None])

    noise = rng.random(images.shape, dtype=np.float32)
    noise -= 0.5
    noise *= 0.08
    images += noise
    np.clip(images, 0.0, 1.0, out=images)
    images -= _MEAN
    images /= _STD
    tensor = torch.from_numpy(images)
    cell_shape = np.zeros((b, GRID * GRID), dtype=np.int64)
    cell_shape[owner, cells] = family + 1
    cell_colour = np.zeros((b, GRID * GRID), dtype=np.int64)
    cell_colour[owner, cells] = hue + 1
    labels = {
        "cell_shape": torch.from_numpy(cell_shape.reshape(b, GRID, GRID)),
        "cell_colour": torch.from_numpy(cell_colour.reshape(b, GRID, GRID)),
        "texture": torch.from_numpy(texture.astype(np.int64)),
        "count": torch.from_numpy((count - 1).astype(np.int64)),
    }
    return tensor, labels


def _hue_to_rgb(hue_degrees: np.ndarray, value: np.ndarray) -> np.ndarray:
    """Fully saturated RGB (n, 3) of the given hues and brightness values."""
    h = (hue_degrees % 360.0) / 60.0
    x = 1.0 - np.abs(h % 2.0 - 1.0)
    sector = np.floor(h).astype(np.int64) % 6
    one, zero = np.ones_like(x), np.zeros_like(x)
    table = np.stack([
        np.stack([one, x, zero], 1), np.stack([x, one, zero], 1), np.stack([zero, one, x], 1),
        np.stack([zero, x, one], 1), np.stack([x, zero, one], 1), np.stack([one, zero, x], 1),
    ])
    rgb = table[sector, np.arange(x.size)]
    return (rgb * value[:, None]).astype(np.float32)
