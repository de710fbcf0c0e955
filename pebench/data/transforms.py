"""Image normalisation shared by every dataset.

The backbones are ImageNet-pretrained (or pretrained on images normalised the same way), so
every dataset hands them images normalised with the ImageNet channel statistics; keeping the
constants and the conversion in one place means no dataset can silently drift from them.
"""

from __future__ import annotations

import numpy as np
import torch

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

# Per-sample arithmetic stays in numpy: tiny multi-threaded torch ops per image cost more in
# thread wake-ups than the arithmetic itself, and their spinning threads slow numpy down.
_MEAN = np.asarray(IMAGENET_MEAN, dtype=np.float32)
_STD = np.asarray(IMAGENET_STD, dtype=np.float32)


def normalize_image(image: np.ndarray) -> torch.Tensor:
    """Turn an HxWx3 image into the normalised float32 (3, H, W) tensor the models take.

    ``image`` is either uint8 in [0, 255] or floating point in [0, 1]; any other dtype is
    refused rather than guessed, because a float image in [0, 255] would silently give
    values 255 times too large.
    """
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 image, got shape {image.shape}")
    if image.dtype == np.uint8:
        scaled = image.astype(np.float32) / np.float32(255.0)
    elif np.issubdtype(image.dtype, np.floating):
        scaled = image.astype(np.float32)
    else:
        raise ValueError(f"expected a uint8 or float image, got dtype {image.dtype}")
    normalised = (scaled - _MEAN) / _STD
    return torch.from_numpy(np.ascontiguousarray(normalised.transpose(2, 0, 1)))
