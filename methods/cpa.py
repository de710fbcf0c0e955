"""Continuous piecewise-affine (CPA) diffeomorphisms of [0, 1] (Freifeld et al., ICCV 2015 and
TPAMI 2017), in the parameterisation of the difw library (Martinez et al., 2022) that DiTASK
uses: a velocity field affine on each of ``cells`` equal cells, continuous, zero at both
ends, integrated for unit time in closed form. The flow is an increasing bijection of [0, 1]
that keeps both ends; ``warp_values`` resamples a sequence along it.

The velocity field v(x) = a_c·x + b_c on cell c is ``basis @ theta``: difw's zero-boundary
basis (its default, "rref"), whose k-th field (k = 1 .. cells - 1) rises with slope 1/cells
from 0 up to the k-th inner vertex and falls linearly to 0 at the next one, its
coefficients divided by their largest magnitude. Another basis spans the same fields but
maps the same ``theta`` (and the same initial distribution of it) to other fields, which is
why this one is kept.
"""

from __future__ import annotations

from functools import cache

import torch

# Velocities and slopes closer to zero than this are zero (difw compares with float32's eps).
EPS = float(torch.finfo(torch.float32).eps)


@cache
def velocity_basis(cells: int) -> torch.Tensor:
    """(2·cells, cells - 1), float64: column k - 1 holds the (slope, intercept) pairs, cell by
    cell, of the k-th basis field."""
    if cells < 2:
        raise ValueError(f"a zero-boundary CPA field needs at least 2 cells, got {cells}")
    width = 1.0 / cells
    basis = torch.zeros(cells - 1, 2 * cells, dtype=torch.float64)
    for k in range(1, cells):
        basis[k - 1, 0:2 * k:2] = width  # v = x/cells on cells 0 .. k-1
        basis[k - 1, 2 * k] = -k * width  # then down to zero at vertex k + 1
        basis[k - 1, 2 * k + 1] = k * width * (k + 1) * width
    return (basis / basis.abs().amax(dim=1, keepdim=True)).T.contiguous()


def integrate(theta: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """The flow of each field ``theta`` (S, cells - 1) for unit time from ``points`` (n,) in
    [0, 1]: (S, n). Within a cell the flow of v = a·x + b is closed-form; a trajectory that
    reaches the cell's boundary before its time is up continues from there in the next cell,
    and it crosses each cell at most once."""
    sets, cells = theta.shape[0], theta.shape[1] + 1
    coefficients = (theta @ velocity_basis(cells).to(theta).T).view(sets, cells, 2)
    x = points.to(theta).expand(sets, -1)
    cell = (x * cells).floor().clamp(0, cells - 1).long()
    time_left = torch.ones_like(x)
    moving = torch.ones_like(x, dtype=torch.bool)
    for _ in range(cells):
        a = coefficients[..., 0].gather(1, cell)
        b = coefficients[..., 1].gather(1, cell)
        flat = a.abs() < EPS
        a_safe = torch.where(flat, torch.ones_like(a), a)
        grow = torch.exp(time_left * a)
        inside = torch.where(flat, x + time_left * b, grow * x + b / a_safe * (grow - 1))
        velocity = a * x + b
        boundary = torch.where(velocity > 0, cell + 1, cell).to(x) / cells
        at_boundary = a * boundary + b
        # The boundary is reached only where the velocity keeps its sign up to it.
        reaches = ((velocity.abs() > EPS) & (at_boundary.abs() > EPS)
                   & (torch.sign(at_boundary) == torch.sign(velocity)))
        ratio = torch.where(reaches, at_boundary / torch.where(reaches, velocity, 1.0), 1.0)
        b_safe = torch.where(b.abs() > EPS, b, torch.ones_like(b))
        hit = torch.where(flat, (boundary - x) / b_safe, torch.log(ratio) / a_safe)
        leaves = moving & reaches & (hit < time_left)
        x = torch.where(leaves, boundary, torch.where(moving, inside, x))
        time_left = torch.where(leaves, time_left - hit, time_left)
        cell = torch.where(leaves, cell + torch.sign(velocity).long(), cell)
        moving = leaves
        if not bool(moving.any()):
            break
    return x


def warp_values(values: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Each sequence ``values`` (..., n) resampled along the flow of ``theta`` (S, cells - 1),
    as difw's ``transform_data`` on a uniform grid of n points: linear interpolation at
    position flow(i / (n - 1))·(n - 1). Returns (S, ..., n)."""
    n = values.shape[-1]
    grid = torch.linspace(0, 1, n, dtype=theta.dtype, device=theta.device)
    position = integrate(theta, grid) * (n - 1)  # (S, n)
    below = position.floor().long().clamp(0, n - 1)
    above = (below + 1).clamp(max=n - 1)
    fraction = position - below.to(position)
    shape = (theta.shape[0], *([1] * (values.dim() - 1)), n)
    low = values.index_select(-1, below.flatten()).unflatten(-1, below.shape)
    high = values.index_select(-1, above.flatten()).unflatten(-1, above.shape)
    # (..., S, n) -> (S, ..., n)
    low, high = low.movedim(-2, 0), high.movedim(-2, 0)
    return low * (1 - fraction.view(shape)) + high * fraction.view(shape)
