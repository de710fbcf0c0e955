"""One optimisation recipe for every method: weight decay by a parameter's role, never by the
number of dimensions alone, so per-task copies of norms and biases are treated as the single
copies of full fine-tuning are."""

from __future__ import annotations

import pytest
import torch
from method_testing import build

from pebench.method import METHODS
from pebench.schedule import adamw


def decay_of(model: torch.nn.Module) -> dict[str, bool]:
    """Parameter name -> whether AdamW decays it."""
    optimizer = adamw(model, 1e-3, 0.05)
    decayed = {id(p) for group in optimizer.param_groups if group["weight_decay"] > 0
               for p in group["params"]}
    return {name: id(p) in decayed for name, p in model.named_parameters() if p.requires_grad}


def shift_or_scale(model: torch.nn.Module, name: str) -> bool:
    """Whether a parameter is, by what it is, a norm's, an embedding's, a bias or a vector:
    judged from the owner's class and the parameter's name, independently of the rule."""
    owner_name, _, leaf = name.rpartition(".")
    owner = model.get_submodule(owner_name)
    kind = type(owner).__name__
    return ("Norm" in kind or isinstance(owner, torch.nn.Embedding) or "bias" in leaf
            or model.get_parameter(name).ndim <= 1)


@pytest.mark.parametrize("method", METHODS.names())
def test_no_norm_bias_embedding_or_vector_is_decayed(method: str) -> None:
    model = build(method)
    decay = decay_of(model)
    wrongly = [n for n, decayed in decay.items() if decayed and shift_or_scale(model, n)]
    assert not wrongly, f"{method} decays {wrongly[:5]}"
    assert any(decay.values()) or method in ("bitfit",), f"{method} decays nothing"


def test_per_task_copies_are_treated_as_their_single_task_originals() -> None:
    adapter = decay_of(build("adapter"))
    full = decay_of(build("mtl-full"))
    block = "encoder.model.layers.0.blocks.0"
    # (4, 32) per-task layer-norm copies and adapter biases, like mtl-full's (32,) originals.
    assert adapter[f"{block}.norm1.weight"] is full[f"{block}.norm1.weight"] is False
    assert adapter[f"{block}.drop_path1.modules_after.0.down_bias"] is False
    assert adapter[f"{block}.drop_path1.modules_after.0.down"] is True
    lite = decay_of(build("polyhistor-lite"))
    assert lite["method.scaling.0.down_bias"] is False  # a bias-scaling vector per site
    assert lite["method.scaling.1.down"] is True  # a scaling kernel
    assert lite["method.conditioning.task.weight"] is False  # an embedding
    assert lite["method.templates.weights.0"] is True  # a generator
    assert full[f"{block}.attn.relative_position_bias_table"] is False
    assert full[f"{block}.attn.qkv.weight"] is True
