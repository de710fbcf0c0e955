"""Trainable-parameter accounting by group: the answer to "how did you count?".

Groups:

* ``decoders``: the per-task heads.
* ``encoder_shared``: trainable encoder parameters used by every task (fine-tuned backbone
  weights, shared adapters, biases in BitFit, ...).
* ``encoder_task_specific``: encoder parameters owned by one task (per-task adapters, per-task
  LoRA, the per-task backbone copies of single-task learning).
* ``other``: hypernetworks, task and layer embeddings and anything else a method owns
  outside the encoder.

A module declares its group with a ``param_group`` attribute (class or instance); every
parameter belongs to the group of its nearest ancestor that declares one. Without any
declaration, parameters under ``model.decoders`` are decoders, under ``model.encoder``
encoder_shared, and under ``model.method`` other.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from torch import nn

DECODERS = "decoders"
ENCODER_SHARED = "encoder_shared"
ENCODER_TASK_SPECIFIC = "encoder_task_specific"
OTHER = "other"
GROUPS = (DECODERS, ENCODER_SHARED, ENCODER_TASK_SPECIFIC, OTHER)

_DEFAULT_GROUP_OF_CHILD = {"decoders": DECODERS, "encoder": ENCODER_SHARED, "method": OTHER}


@dataclass(frozen=True)
class ParamCounts:
    trainable: int
    total: int
    decoders: int
    encoder_shared: int
    encoder_task_specific: int
    other: int

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def count_parameters(model: nn.Module) -> ParamCounts:
    """Count ``model``'s parameters once each (shared tensors are not counted twice)."""
    trainable = dict.fromkeys(GROUPS, 0)
    seen: set[int] = set()
    total = 0

    def walk(module: nn.Module, group: str) -> None:
        nonlocal total
        group = getattr(module, "param_group", group)
        if group not in GROUPS:
            raise ValueError(f"{type(module).__name__}.param_group = {group!r}; valid: {GROUPS}")
        for param in module.parameters(recurse=False):
            if id(param) in seen:
                continue
            seen.add(id(param))
            total += param.numel()
            if param.requires_grad:
                trainable[group] += param.numel()
        for child in module.children():
            walk(child, group)

    for name, child in model.named_children():
        walk(child, _DEFAULT_GROUP_OF_CHILD.get(name, OTHER))
    return ParamCounts(trainable=sum(trainable.values()), total=total, **trainable)
