"""Building blocks for method tests: build a model, take optimiser steps, compare passes."""

from __future__ import annotations

from collections.abc import Callable

import torch

from pebench.backbones import BACKBONES, SwinEncoder
from pebench.config import method_config
from pebench.method import METHODS
from pebench.model import MultiTaskModel

PASCAL = {"semseg": 21, "human_parts": 7, "saliency": 1, "normals": 3}
NANO = {"semseg": 7, "human_parts": 7, "saliency": 1, "normals": 3}
# Swin-T in the published setting: stage widths, blocks per stage, heads per stage.
SWIN_T_WIDTHS, SWIN_T_DEPTHS = (96, 192, 384, 768), (2, 2, 6, 2)
DECODERS_PUBLISHED = 1_946_624


def per_swin_t_block(f: Callable[[int], int]) -> int:
    """Σ over Swin-T's blocks of f(d), d the block's width."""
    return sum(depth * f(d) for d, depth in zip(SWIN_T_WIDTHS, SWIN_T_DEPTHS, strict=True))


# The widths of Swin-T's LayerNorms: two per block, the patch-merging norms (4·d of the stage
# before) and the patch-embedding norm; each norm holds a scale and a shift of that width.
SWIN_T_LAYER_NORM_WIDTHS = per_swin_t_block(lambda d: 2 * d) + 4 * (96 + 192 + 384) + 96


def swin_t_extras(reductions: bool = True) -> int:
    """What MTLoRA and the methods built on its code train on Swin-T besides their adapted
    linears: the patch embedding (conv and norm), every LayerNorm, the relative-position
    tables (169 offsets per head) and, unless ``reductions`` is off, the patch-merging
    reductions."""
    patch_embed = 3 * 96 * 16 + 96
    position_bias = 169 * (3 * 2 + 6 * 2 + 12 * 6 + 24 * 2)
    merging = sum(4 * d * 2 * d for d in SWIN_T_WIDTHS[:3]) if reductions else 0
    return patch_embed + 2 * SWIN_T_LAYER_NORM_WIDTHS + position_bias + merging


def build(method: str, outputs: dict[str, int] = NANO, backbone: str = "swin-nano",
          img_size: int = 64, meta: bool = False, **overrides: str) -> MultiTaskModel:
    """A model with a randomly initialised (seeded) backbone; ``meta`` allocates nothing."""
    torch.manual_seed(0)
    config = method_config(method, overrides)
    with torch.device("meta" if meta else "cpu"):
        encoder = SwinEncoder(BACKBONES.get(backbone), img_size)
        return MultiTaskModel(encoder, METHODS.get(method)(config, tuple(outputs)), outputs)


def train_step(model: MultiTaskModel, images: torch.Tensor,
               optimizer: torch.optim.Optimizer) -> None:
    model.prepare()
    loss = sum(o.square().mean() for o in model(images).values())
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def trainable(model: MultiTaskModel) -> list[torch.nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def assert_loop_and_batched_agree(model: MultiTaskModel, tasks: dict[str, int]) -> None:
    """Outputs and gradients of the per-task loop and the task-batched pass agree (float64,
    after one step so that nothing is still at its initial value), and the tasks' features
    differ."""
    model = model.double()
    optimizer = torch.optim.AdamW(trainable(model), lr=1e-2)
    train_step(model, torch.randn(2, 3, 64, 64, dtype=torch.float64), optimizer)
    images = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    results = {}
    for execution in ("loop", "batched"):
        model.method.config.execution = execution
        model.zero_grad()
        model.prepare()
        out = model(images)
        sum(o.square().mean() for o in out.values()).backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        results[execution] = (out, grads)
    (loop_out, loop_grads), (batched_out, batched_grads) = results["loop"], results["batched"]
    for task in tasks:
        torch.testing.assert_close(loop_out[task], batched_out[task], rtol=1e-9, atol=1e-10)
    assert loop_grads.keys() == batched_grads.keys() and len(loop_grads) > 0
    for name, grad in loop_grads.items():
        torch.testing.assert_close(grad, batched_grads[name], rtol=1e-7, atol=1e-10)
    # A check that could pass with every task on the same encoder would prove nothing: after
    # the step, each task's own parameters must give it its own features.
    with torch.no_grad():
        features = model.method.encode(model.encoder, images)
    first, *others = tasks
    for task in others:
        assert not torch.allclose(features[first][0], features[task][0]), task
