"""DiTASK: the taps against timm's own blocks carrying warped weights, identity at θ = 0,
the published-setting counts, loop/batched equivalence, what trains (the decompositions are
not in checkpoints) and configuration errors."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest
import torch
from method_testing import (
    DECODERS_PUBLISHED,
    NANO,
    PASCAL,
    SWIN_T_DEPTHS,
    assert_loop_and_batched_agree,
    build,
    swin_t_extras,
    train_step,
    trainable,
)
from torch import nn

from methods.cpa import integrate
from methods.ditask import SpectralWarp, WarpedLinear
from pebench.backbones import BACKBONES, SwinEncoder
from pebench.errors import PebenchError
from pebench.model import MultiTaskModel
from pebench.params import count_parameters

TASKS = len(PASCAL)


def warped_weight(weight: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """W with each block's singular values resampled along the flow of θ (cells - 1,),
    computed from its own decomposition and numpy's linear interpolation."""
    out_features, in_features = weight.shape
    blocks = 3 if out_features == 3 * in_features else 1
    warped = []
    for chunk in weight.reshape(blocks, -1, in_features):
        u, s, vh = torch.linalg.svd(chunk, full_matrices=False)
        n = s.shape[0]
        flow = integrate(theta.unsqueeze(0), torch.linspace(0, 1, n, dtype=theta.dtype))[0]
        s = torch.from_numpy(np.interp(flow.detach().numpy() * (n - 1), np.arange(n),
                                       s.numpy()))
        warped.append(u @ torch.diag(s) @ vh)
    return torch.cat(warped)


@contextmanager
def float64() -> Iterator[None]:
    """Build in float64, so that the decompositions taken at attach time are float64 too."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def build64(**overrides: str) -> MultiTaskModel:
    with float64():
        return build("ditask", dropout="0", **overrides).eval()


def reference_encoder() -> SwinEncoder:
    """The frozen encoder ``build64`` starts from (same seed, same construction order)."""
    torch.manual_seed(0)
    with float64():
        return SwinEncoder(BACKBONES.get("swin-nano"), 64)


def set_weight(block: nn.Module, name: str, weight: torch.Tensor) -> None:
    with torch.no_grad():
        block.get_submodule(name).weight.copy_(weight)


def reference_taps(model: MultiTaskModel, images: torch.Tensor) -> dict[str, list[torch.Tensor]]:
    """Every block of the frozen encoder with its warped weights put in, run by timm; each
    task's stream of a stage's last block is timm's block with that task's warped proj, fc1
    and fc2 (and the shared qkv), from the same input."""
    reference = reference_encoder()
    taps: dict[str, list[torch.Tensor]] = {task: [] for task in NANO}
    outputs: list[torch.Tensor] = []
    x = reference.model.patch_embed(images)
    sites = zip(reference.blocks(), model.encoder.blocks(), strict=True)
    for stage in reference.model.layers:
        x = stage.downsample(x)
        for task, out in zip(NANO, outputs, strict=False):  # none before the first stage
            taps[task].append(stage.downsample(out))
        for reference_site, site in (next(sites) for _ in stage.blocks):
            block = reference_site.block
            linears = {"attn.qkv": site.linear("attn.qkv"), "mlp.fc1": site.linear("mlp.fc1"),
                       "mlp.fc2": site.linear("mlp.fc2")}
            proj = site.linear("attn.proj")
            if isinstance(proj, nn.Identity):  # a stage end: moved after the attention
                proj = site.block.drop_path1.modules_after[0]
            linears["attn.proj"] = proj
            for name, linear in linears.items():
                set_weight(block, name, warped_weight(block.get_submodule(name).weight,
                                                      linear.shared.theta[0]))
            if linears["mlp.fc1"].tasks is not None:
                outputs = []
                for t in range(len(NANO)):
                    task_block = copy.deepcopy(block)
                    for name in ("attn.proj", "mlp.fc1", "mlp.fc2"):
                        set_weight(task_block, name, warped_weight(
                            linears[name].base.weight.detach(), linears[name].tasks.theta[t]))
                    outputs.append(task_block(x))
            x = block(x)
    for task, out in zip(NANO, outputs, strict=True):
        taps[task].append(out)
    return {task: [t.permute(0, 3, 1, 2) for t in tapped] for task, tapped in taps.items()}


def test_taps_match_timms_own_blocks_with_warped_weights() -> None:
    model = build64()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, SpectralWarp):
                module.theta.normal_(0, 2)  # large enough to move every singular value
    images = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        model.prepare()
        ours = model.method.encode(model.encoder, images)
        reference = reference_taps(model, images)
    for task in NANO:
        for mine, theirs in zip(ours[task], reference[task], strict=True):
            torch.testing.assert_close(mine, theirs, rtol=1e-9, atol=1e-10)
    assert not torch.allclose(ours["semseg"][0], ours["normals"][0])


def test_theta_zero_is_the_frozen_encoder() -> None:
    model = build64()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, SpectralWarp):
                module.theta.zero_()
    images = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        model.prepare()
        features = model.method.encode(model.encoder, images)
        frozen = reference_encoder()(images)
    for task in NANO:
        for ours, theirs in zip(features[task], frozen, strict=True):
            # The same weights, multiplied in another order (the moved projection).
            torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-14)


def test_published_setting_counts() -> None:
    counts = count_parameters(build("ditask", PASCAL, "swin-t", 448, meta=True))
    # 63 shared entries on qkv, proj, fc1, fc2 of every block; 3 per task on proj, fc1 and
    # fc2 of each stage's last block; MTLoRA's extras (patch embedding, norms, position
    # tables, patch mergings).
    shared = 4 * sum(SWIN_T_DEPTHS) * 63
    assert counts.encoder_task_specific == TASKS * 4 * 3 * 3 == 144
    assert counts.encoder_shared == shared + swin_t_extras() == 1_602_570
    assert counts.decoders == DECODERS_PUBLISHED and counts.other == 0
    assert counts.trainable == 3_549_338


def test_loop_and_task_batched_passes_agree() -> None:
    assert_loop_and_batched_agree(build("ditask", dropout="0"), NANO)


def test_what_trains_and_the_decompositions_stay_out_of_checkpoints() -> None:
    model = build("ditask")
    names = {n for n, p in model.encoder.named_parameters() if p.requires_grad}
    thetas = {n for n in names if n.endswith(".theta")}
    assert len(thetas) == 4 * 8 + 3 * 4  # shared on every linear, task warps at stage ends
    assert all(n.startswith("model.patch_embed.") or "norm" in n
               or n.endswith("relative_position_bias_table") or ".downsample." in n
               for n in names - thetas)
    assert not any(n.endswith((".u", ".s", ".vh")) for n in model.state_dict())
    frozen = {n: p.clone() for n, p in model.encoder.named_parameters() if not p.requires_grad}
    optimizer = torch.optim.AdamW(trainable(model), lr=1e-2)
    for _ in range(2):
        train_step(model, torch.randn(2, 3, 64, 64), optimizer)
    for name, param in model.encoder.named_parameters():
        if name in frozen:
            assert torch.equal(param, frozen[name]), name
    qkv = next(model.encoder.blocks()).linear("attn.qkv")
    assert isinstance(qkv, WarpedLinear) and qkv.u.shape[0] == 3  # q, k, v apart


def test_configuration_errors() -> None:
    with pytest.raises(PebenchError, match="task_cells must be ≥ 2"):
        build("ditask", task_cells="1")
    with pytest.raises(PebenchError, match=r"dropout must be in \[0, 1\)"):
        build("ditask", dropout="1")
