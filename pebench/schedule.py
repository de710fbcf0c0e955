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


# Normalisation layers: their scale and shift are not decayed, whatever their shape.
NORM_LAYERS = (nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._BatchNorm,
               nn.modules.instancenorm._InstanceNorm)


def is_decayed(module: nn.Module, name: str, param: nn.Parameter) -> bool:
    """Weight decay by a parameter's role, the same rule for every method: decay the weights
    that map (matrices, kernels, low-rank factors, generators, prompts); not what shifts,
    scales or indexes. Exempt: every vector; the parameters of normalisation layers and
    embeddings; biases by name (``bias``, ``*_bias``, the relative-position ``*bias_table``),
    whatever their shape, so per-task copies (T, C) and bias-scaling vectors are treated as
    their single-task originals; and what a module lists in ``no_weight_decay`` (a per-task
    layer norm's scale)."""
    if param.ndim <= 1 or isinstance(module, (*NORM_LAYERS, nn.Embedding)):
        return False
    if name == "bias" or name.endswith(("_bias", "bias_table")):
        return False
    return name not in getattr(module, "no_weight_decay", ())


def adamw(model: nn.Module, lr: float, weight_decay: float, fused: bool = False,
          rates: dict[nn.Module, float] | None = None) -> torch.optim.AdamW:
    """AdamW over the trainable parameters, decayed by role (``is_decayed``), at ``lr`` but
    for the parameters of the submodules in ``rates`` (the decoders), at theirs.

    ``fused`` updates every parameter in one kernel per step instead of several per
    parameter (issue 11's profile put the per-parameter loop at ~15% of a full fine-tuning
    step on a CPU). Pretraining keeps the per-parameter loop: its output is the cached
    embedded backbone, which must not change with this choice."""
    rate_of = {id(p): rate for sub, rate in (rates or {}).items() for p in sub.parameters()}
    groups: dict[tuple[float, bool], list[nn.Parameter]] = {}
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if param.requires_grad:
                key = (rate_of.get(id(param), lr), is_decayed(module, name, param))
                groups.setdefault(key, []).append(param)
    # The groups at ``lr`` first, decayed before not: with one rate, the two groups of the
    # optimiser states saved before ``rates`` existed, in their order.
    order = sorted(groups, key=lambda key: (key[0] != lr, not key[1]))
    return torch.optim.AdamW(
        [{"params": groups[key], "lr": key[0], "weight_decay": weight_decay if key[1] else 0.0}
         for key in order], lr=lr, fused=True if fused else None)
