"""Optimiser and learning-rate schedule shared by the benchmark loop and pretraining."""

from __future__ import annotations

import math

import torch
from torch import nn


def warmup_cosine(total_steps: int, warmup_steps: int):
    """LambdaLR factor: linear warm-up from ~0 to 1, then cosine decay to 0 at ``total_steps``."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def adamw(model: nn.Module, lr: float, weight_decay: float,
          fused: bool = False) -> torch.optim.AdamW:
    """AdamW over the trainable parameters, without weight decay on biases, norms, 1-D
    tensors and relative-position tables (the usual Swin recipe).

    ``fused`` updates every parameter in one kernel per step instead of several per
    parameter (issue 11's profile put the per-parameter loop at ~15% of a full fine-tuning
    step on a CPU). Pretraining keeps the per-parameter loop: its output is the cached
    embedded backbone, which must not change with this choice."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if param.ndim <= 1 or name.endswith(".bias") or "relative_position_bias_table" in name:
            no_decay.append(param)
        else:
            decay.append(param)
    groups = [{"params": decay, "weight_decay": weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=lr,
                             fused=True if fused else None)
