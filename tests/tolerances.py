"""Tolerances for float32 comparisons, derived from the magnitudes involved, never from what
one machine printed: float32 kernels differ between CPUs (MKL / oneDNN code paths, AVX2 and
AVX-512), so two implementations that agree exactly in float64 agree in float32 only up to
rounding, which scales with the size of the values and the number of roundings."""

from __future__ import annotations

import torch

FLOAT32_EPS = torch.finfo(torch.float32).eps


def float32_atol(reference: torch.Tensor, roundings: int) -> float:
    """``roundings`` roundings of a value as large as ``reference``'s largest, each at most
    float32's epsilon relative: a bound on the difference of two summation orders."""
    return roundings * FLOAT32_EPS * reference.abs().max().item()


def swin_nano_roundings() -> int:
    """A tap of swin-nano at 64 px has gone through 8 blocks of 4 linear layers whose sums run
    over at most 1,024 terms; rounding errors of a sum grow like √terms, so 8 · 4 · √1024 =
    1,024 roundings of the largest value bound two float32 orderings of the same function."""
    return 8 * 4 * 32
