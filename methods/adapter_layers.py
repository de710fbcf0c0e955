"""Layers shared by adapter-style methods (not a method family itself)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from pebench.task_context import TaskContext

AdapterWeights = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


class GeneratedAdapter(nn.Module):
    """A residual bottleneck adapter, h + W_up·GELU(W_down·h + b_down) + b_up (Houlsby et al.,
    2019; Polyhistor Eq. 1), whose per-task weights are generated outside it once per step.

    It owns no parameters: the method that generates the weights hands them over with
    ``set_weights`` in ``prepare()``. Weights are (T, d, n), (T, n), (T, n, d), (T, d) for T
    tasks and are applied through the encoder's TaskContext, so the same adapter serves the
    per-task loop and the task-batched pass.
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
        down_w, down_b, up_w, up_b = self._weights
        hidden = F.gelu(self.context.linear(x, down_w, down_b))
        return x + self.context.linear(hidden, up_w, up_b)
