"""Bottleneck adapter layers shared by adapter-style methods (not a method family itself).

Every adapter here computes the residual bottleneck of Houlsby et al. (2019),
h + W_up·f(W_down·h + b_down) + b_up, through the encoder's TaskContext, so one module serves
the per-task loop and the task-batched pass. Weights carry a leading dimension of weight
sets: T (one per task) or 1 (one set shared by every task, see ``TaskContext.linear``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Literal, NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from pebench.errors import PebenchError
from pebench.params import ENCODER_SHARED, ENCODER_TASK_SPECIFIC
from pebench.task_context import TaskContext

if TYPE_CHECKING:
    from pebench.backbones import BackboneSpec, BlockSite



class LowRank(NamedTuple):
    """A weight W = left·rightᵀ of shape (T, rows, cols) kept as its factors, left
    (T, rows, k) and right (T, cols, k), and applied as (x·left)·rightᵀ: the same map with
    fewer multiplications than forming W wherever k·(rows + cols) < rows·cols."""

    left: torch.Tensor
    right: torch.Tensor

    @property
    def shape(self) -> tuple[int, ...]:
        return (*self.left.shape[:-1], self.right.shape[-2])


# A weight (T, rows, cols), formed or as factors; biases are (T, cols).
Weight = torch.Tensor | LowRank
AdapterWeights = tuple[Weight, torch.Tensor, Weight, torch.Tensor]
Activation = Literal["gelu", "relu", "swish"]
# Where adapters go in a block: after both sub-layers (Houlsby) or after the MLP only (Pfeiffer).
Placement = Literal["both", "mlp"]
ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "gelu": F.gelu, "relu": F.relu, "swish": F.silu}


def bottleneck_residual(context: TaskContext, x: torch.Tensor, weights: AdapterWeights,
                        activation: Activation = "gelu") -> torch.Tensor:
    """h + W_up·f(W_down·h + b_down) + b_up with weights (S, d, n), (S, n), (S, n, d), (S, d)."""
    down_w, down_b, up_w, up_b = weights
    hidden = ACTIVATIONS[activation](project(context, x, down_w, down_b))
    return x + project(context, hidden, up_w, up_b)


def project(context: TaskContext, x: torch.Tensor, weight: Weight,
            bias: torch.Tensor) -> torch.Tensor:
    """x·W + b through the task context, W formed or as its low-rank factors."""
    if isinstance(weight, LowRank):
        return context.linear(context.linear(x, weight.left), weight.right.mT, bias)
    return context.linear(x, weight, bias)


def adapter_slots(site: BlockSite, placement: Placement) -> list[Callable[[nn.Module], None]]:
    """The block's branch outputs that take an adapter under ``placement``, in forward order."""
    if placement == "both":
        return [site.add_after_attention, site.add_after_mlp]
    return [site.add_after_mlp]


def check_reduction(spec: BackboneSpec, reduction: int) -> None:
    """A bottleneck of d / ``reduction`` must exist in every stage."""
    widths = spec.stage_dims
    if any(d % reduction for d in widths):
        raise PebenchError(f"--set reduction={reduction} must divide every stage width of "
                           f"{spec.name} ({', '.join(map(str, widths))}).")


def weight_sets_group(shared: bool) -> str:
    """The parameter group of a module holding one weight set per task, or one shared set."""
    return ENCODER_SHARED if shared else ENCODER_TASK_SPECIFIC


class GeneratedAdapter(nn.Module):
    """A bottleneck adapter whose per-task weights are generated outside it once per step.

    It owns no parameters: the method that generates the weights hands them over with
    ``set_weights`` in ``prepare()``.
    """

    def __init__(self, context: TaskContext, dim: int, bottleneck: int) -> None:
        super().__init__()
        self.context = context
        self.dim = dim
        self.bottleneck = bottleneck
        self._weights: AdapterWeights | None = None

    def set_weights(self, weights: AdapterWeights) -> None:
        tasks = weights[0].shape[0]
        expected = [(tasks, self.dim, self.bottleneck), (tasks, self.bottleneck),
                    (tasks, self.bottleneck, self.dim), (tasks, self.dim)]
        actual = [tuple(w.shape) for w in weights]
        if actual != expected:
            raise ValueError(f"adapter weights of shapes {actual}, expected {expected}")
        self._weights = weights

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._weights is None:
            raise RuntimeError("adapter weights were never generated: call model.prepare() "
                               "before the forward pass")
        return bottleneck_residual(self.context, x, self._weights)


class BottleneckAdapter(nn.Module):
    """A bottleneck adapter owning ``num_sets`` weight sets (one per task, or 1 shared).

    Initialised as Houlsby et al. (2019, Sec. 3.6) do: both projections drawn from a
    zero-mean normal of std ``init_std`` truncated at two standard deviations, biases zero,
    so the adapter starts *near* the identity (not exactly: the paper's choice).
    """

    def __init__(self, context: TaskContext, dim: int, bottleneck: int, num_sets: int,
                 shared: bool, activation: Activation, init_std: float) -> None:
        super().__init__()
        self.context = context
        self.activation: Activation = activation
        self.param_group = weight_sets_group(shared)
        self.down = nn.Parameter(_truncated_normal((num_sets, dim, bottleneck), init_std))
        self.down_bias = nn.Parameter(torch.zeros(num_sets, bottleneck))
        self.up = nn.Parameter(_truncated_normal((num_sets, bottleneck, dim), init_std))
        self.up_bias = nn.Parameter(torch.zeros(num_sets, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = (self.down, self.down_bias, self.up, self.up_bias)
        return bottleneck_residual(self.context, x, weights, self.activation)


def _truncated_normal(shape: tuple[int, ...], std: float) -> torch.Tensor:
    tensor = torch.empty(shape)
    if std > 0:
        nn.init.trunc_normal_(tensor, std=std, a=-2 * std, b=2 * std)
    else:
        nn.init.zeros_(tensor)
    return tensor
