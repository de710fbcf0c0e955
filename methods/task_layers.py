"""Per-task (or shared) copies of a frozen layer's bias or normalisation parameters.

Methods that train existing parameters of a frozen encoder (BitFit's biases, the layer norms
Houlsby adapters train) get, in the multi-task form, one copy per task initialised from the
pretrained values; ``shared=True`` keeps a single copy that every task uses. The copies carry
a leading dimension of weight sets and are applied through the encoder's TaskContext, so the
per-task loop and the task-batched pass agree.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from methods.adapter_layers import weight_sets_group
from pebench.task_context import TaskContext


def _copies(value: torch.Tensor, num_sets: int) -> nn.Parameter:
    return nn.Parameter(value.detach().unsqueeze(0).repeat(num_sets, *([1] * value.dim())))


class TaskBias(nn.Module):
    """Runs ``module`` without its bias, then adds the bias of the active task.

    The pretrained bias moves out of ``module`` (which keeps its frozen weight) into
    ``num_sets`` trainable copies; ``channel_dim`` is where the bias applies in the output
    (-1 for Linear and LayerNorm, 1 for a Conv2d's NCHW output).
    """

    def __init__(self, module: nn.Module, context: TaskContext, num_sets: int, shared: bool,
                 channel_dim: int) -> None:
        super().__init__()
        bias = module.bias
        if not isinstance(bias, torch.Tensor):
            raise ValueError(f"{type(module).__name__} has no bias to make task-specific")
        self.param_group = weight_sets_group(shared)
        self.bias = _copies(bias, num_sets)
        module.bias = None
        self.module = module
        self.context = context
        self.channel_dim = channel_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.context.add(self.module(x), self.bias, self.channel_dim)


class TaskLayerNorm(nn.Module):
    """A LayerNorm (over the last dimension) with one trainable scale and shift per task,
    initialised from the pretrained ``norm``."""

    # A norm's scale and shift, one per weight set: not decayed (pebench.schedule.is_decayed).
    no_weight_decay = ("weight", "bias")

    def __init__(self, norm: nn.LayerNorm, context: TaskContext, num_sets: int,
                 shared: bool) -> None:
        super().__init__()
        if len(norm.normalized_shape) != 1 or norm.weight is None or norm.bias is None:
            raise ValueError("TaskLayerNorm takes an affine LayerNorm over the last dimension")
        self.param_group = weight_sets_group(shared)
        self.weight = _copies(norm.weight, num_sets)
        self.bias = _copies(norm.bias, num_sets)
        self.eps = norm.eps
        self.context = context

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        normalised = F.layer_norm(x, x.shape[-1:], eps=self.eps)
        return self.context.add(self.context.mul(normalised, self.weight), self.bias)


def layer_norms_per_task(encoder: nn.Module, num_sets: int, shared: bool) -> None:
    """Make every LayerNorm of the encoder (two per block, the patch-merging norms and the
    patch-embedding norm) a trainable TaskLayerNorm with ``num_sets`` weight sets."""
    names = [name for name, _ in encoder.layers_of(nn.LayerNorm)]
    for name in names:
        encoder.replace_module(name, lambda norm: TaskLayerNorm(
            norm, encoder.task_context, num_sets, shared))
