"""Low-rank updates (Hu et al., 2022) with one weight set per task, or one shared set."""

from __future__ import annotations

import math

import torch
from torch import nn

from pebench.task_context import TaskContext


class LowRankUpdate(nn.Module):
    """scale · B·A·dropout(x) with ``num_sets`` weight sets, applied through the encoder's
    TaskContext (one set: shared by every task).

    A (rank × in) is initialised like a Linear layer's weight (Kaiming-uniform with a = √5,
    the rule PEFT and the MTLoRA code use) and B (out × rank) at zero, so the update starts at
    exactly zero (Hu et al., Sec. 4.1). Stored as (S, in, r) and (S, r, out) so that the
    task-batched pass applies every task's update in one batched matmul.
    """

    def __init__(self, context: TaskContext, in_features: int, out_features: int,
                 num_sets: int, rank: int, scale: float, dropout: float, group: str) -> None:
        super().__init__()
        self.context = context
        self.scale = scale
        self.param_group = group
        a = torch.empty(num_sets, rank, in_features)
        for index in range(num_sets):
            nn.init.kaiming_uniform_(a[index], a=math.sqrt(5))
        self.lora_a = nn.Parameter(a.transpose(1, 2).contiguous())
        self.lora_b = nn.Parameter(torch.zeros(num_sets, rank, out_features))
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        low = self.context.linear(self.context.linear(self.dropout(x), self.lora_a), self.lora_b)
        return self.scale * low


class LoRALinear(nn.Module):
    """A frozen Linear plus a low-rank update of its input: W·x + b + update(x)."""

    def __init__(self, base: nn.Linear, update: LowRankUpdate) -> None:
        super().__init__()
        self.base = base
        self.update = update

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + self.update(x)
