"""The LoRA layer (Hu et al., 2022) with one low-rank pair per task, or one shared pair."""

from __future__ import annotations

import math

import torch
from torch import nn

from methods.adapter_layers import weight_sets_group
from pebench.task_context import TaskContext


class LoRALinear(nn.Module):
    """W·x + b + (alpha / rank) · B·A·dropout(x) around a frozen Linear.

    A (rank × in) is initialised like a Linear layer's weight (Kaiming-uniform with a = √5,
    the same rule PEFT uses) and B (out × rank) at zero, so the layer starts as exactly the
    frozen one (Hu et al., Sec. 4.1). Stored as (S, in, r) and (S, r, out) for ``num_sets`` S
    weight sets so that the task-batched pass applies all tasks in one batched matmul.
    """

    def __init__(self, base: nn.Linear, context: TaskContext, num_sets: int, shared: bool,
                 rank: int, alpha: float, dropout: float) -> None:
        super().__init__()
        self.base = base
        self.context = context
        self.scaling = alpha / rank
        self.param_group = weight_sets_group(shared)
        a = torch.empty(num_sets, rank, base.in_features)
        for index in range(num_sets):
            nn.init.kaiming_uniform_(a[index], a=math.sqrt(5))
        self.lora_a = nn.Parameter(a.transpose(1, 2).contiguous())
        self.lora_b = nn.Parameter(torch.zeros(num_sets, rank, base.out_features))
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        low_rank = self.context.linear(self.context.linear(self.dropout(x), self.lora_a),
                                       self.lora_b)
        return self.base(x) + self.scaling * low_rank
