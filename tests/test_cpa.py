"""CPA flows (methods/cpa.py): the basis spans continuous fields zero at both ends, the
closed-form flow is the ODE's (against a fine Runge-Kutta integration), it is an increasing
bijection of [0, 1] with the identity at θ = 0, its gradient is the finite differences', and
the resampling is linear interpolation along it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from methods.cpa import integrate, velocity_basis, warp_values


def velocity(theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """v(x) of the single field ``theta`` (cells - 1,) at points x, straight from the basis."""
    cells = theta.shape[0] + 1
    coefficients = (velocity_basis(cells) @ theta).view(cells, 2)
    cell = (x * cells).floor().clamp(0, cells - 1).long()
    return coefficients[cell, 0] * x + coefficients[cell, 1]


def runge_kutta(theta: torch.Tensor, x: torch.Tensor, steps: int = 4000) -> torch.Tensor:
    dt = 1.0 / steps
    for _ in range(steps):
        k1 = velocity(theta, x)
        k2 = velocity(theta, x + dt / 2 * k1)
        k3 = velocity(theta, x + dt / 2 * k2)
        k4 = velocity(theta, x + dt * k3)
        x = x + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    return x


@pytest.mark.parametrize("cells", [2, 4, 9, 64])
def test_the_basis_fields_are_continuous_zero_at_both_ends_and_independent(cells: int) -> None:
    basis = velocity_basis(cells)
    assert basis.shape == (2 * cells, cells - 1)
    assert torch.linalg.matrix_rank(basis) == cells - 1
    assert torch.allclose(basis.abs().amax(dim=0), torch.ones(cells - 1, dtype=torch.float64))
    pairs = basis.T.reshape(cells - 1, cells, 2)  # (field, cell, slope/intercept)
    vertices = torch.arange(cells + 1, dtype=torch.float64) / cells
    left = pairs[:, :, 0] * vertices[:-1] + pairs[:, :, 1]  # each cell at its left end
    right = pairs[:, :, 0] * vertices[1:] + pairs[:, :, 1]
    torch.testing.assert_close(right[:, :-1], left[:, 1:], rtol=0, atol=1e-12)
    torch.testing.assert_close(left[:, 0], torch.zeros(cells - 1, dtype=torch.float64))
    torch.testing.assert_close(right[:, -1], torch.zeros(cells - 1, dtype=torch.float64))


@pytest.mark.parametrize(("cells", "scale"), [(4, 0.5), (4, 3.0), (16, 2.0), (64, 8.0)])
def test_the_closed_form_flow_is_the_odes(cells: int, scale: float) -> None:
    torch.manual_seed(cells)
    theta = torch.randn(cells - 1, dtype=torch.float64) * scale
    x = torch.linspace(0, 1, 101, dtype=torch.float64)
    flow = integrate(theta.unsqueeze(0), x)[0]
    torch.testing.assert_close(flow, runge_kutta(theta, x), rtol=0, atol=1e-7)
    # An increasing bijection of [0, 1] that keeps both ends, and it moves points.
    assert flow[0] == 0 and abs(float(flow[-1]) - 1) < 1e-12
    assert bool((flow.diff() > 0).all())
    assert float((flow - x).abs().max()) > 1e-3


def test_theta_zero_is_the_identity_and_sets_are_independent() -> None:
    x = torch.linspace(0, 1, 33, dtype=torch.float64)
    theta = torch.zeros(3, 7, dtype=torch.float64)
    theta[1] = torch.randn(7, dtype=torch.float64)
    flows = integrate(theta, x)
    torch.testing.assert_close(flows[0], x, rtol=0, atol=0)
    torch.testing.assert_close(flows[2], x, rtol=0, atol=0)
    torch.testing.assert_close(flows[1], integrate(theta[1:2], x)[0])


def test_the_gradient_is_the_finite_differences() -> None:
    torch.manual_seed(0)
    theta = (torch.randn(2, 5, dtype=torch.float64) * 2).requires_grad_()
    x = torch.linspace(0.05, 0.95, 13, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda t: integrate(t, x), (theta,))


def test_values_are_interpolated_linearly_along_the_flow() -> None:
    torch.manual_seed(1)
    values = torch.randn(2, 12, dtype=torch.float64).cumsum(-1)
    theta = torch.randn(3, 4, dtype=torch.float64) * 2
    warped = warp_values(values, theta)
    assert warped.shape == (3, 2, 12)
    grid = torch.linspace(0, 1, 12, dtype=torch.float64)
    for s, flow in enumerate(integrate(theta, grid)):
        for row in range(2):
            expected = np.interp(flow.numpy() * 11, np.arange(12), values[row].numpy())
            np.testing.assert_allclose(warped[s, row].numpy(), expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(warp_values(values, torch.zeros(1, 4, dtype=torch.float64))[0],
                               values, rtol=0, atol=0)


def test_too_few_cells_is_an_error() -> None:
    with pytest.raises(ValueError, match="at least 2 cells"):
        velocity_basis(1)
