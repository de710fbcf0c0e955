"""Every registered method trains what it says it trains: after two steps (so that the
zero-initialised halves of LoRA-style updates, and chains of them, are no longer zero), a
backward pass reaches every trainable parameter, and the frozen ones get no gradient."""

from __future__ import annotations

import pytest
import torch
from method_testing import build, train_step, trainable

from pebench.method import METHODS

# Trainable parameters that no output depends on, by the method's definition. MTLoRA: the
# task-agnostic update of the very last block's fc2 only changes the shared stream's final
# output, which feeds no tap (every last-stage tap is a task's own output); the released
# code has it too, and the published 4.95M counts it.
NO_GRADIENT_BY_DESIGN = {
    "mtlora": {f"encoder.model.layers.3.blocks.1.mlp.fc2.shared.lora_{ab}"
               for ab in "ab"},
    # DiTASK: the same reason for the shared warps of the very last block's proj (moved
    # after the attention), fc1 and fc2; its task streams use their own warps throughout.
    "ditask": {f"encoder.model.layers.3.blocks.1.{name}.shared.theta"
               for name in ("drop_path1.modules_after.0", "mlp.fc1", "mlp.fc2")},
}


@pytest.mark.parametrize("method", METHODS.names())
def test_every_trainable_parameter_gets_a_gradient(method: str) -> None:
    model = build(method)
    optimizer = torch.optim.AdamW(trainable(model), lr=1e-2)
    for _ in range(2):
        train_step(model, torch.randn(2, 3, 64, 64), optimizer)
    optimizer.zero_grad(set_to_none=True)
    model.prepare()
    sum(o.square().mean() for o in model(torch.randn(2, 3, 64, 64)).values()).backward()
    dead = {name for name, p in model.named_parameters()
            if p.requires_grad and (p.grad is None or not p.grad.abs().sum() > 0)}
    assert dead == NO_GRADIENT_BY_DESIGN.get(method, set()), method
    frozen_with_grad = [name for name, p in model.named_parameters()
                        if not p.requires_grad and p.grad is not None]
    assert frozen_with_grad == []
