"""TADFormer: the taps against a reference written the way the released code computes them
(prompts concatenated into every window, explicit attention, one task and one head at a
time), the published-setting counts, the dynamic filter, the initial state, what trains and
configuration errors."""

from __future__ import annotations

import pytest
import torch
from method_testing import (
    DECODERS_PUBLISHED,
    NANO,
    PASCAL,
    SWIN_T_DEPTHS,
    SWIN_T_WIDTHS,
    assert_loop_and_batched_agree,
    build,
    swin_t_extras,
    train_step,
    trainable,
)
from timm.models.swin_transformer import window_partition, window_reverse
from torch.nn import functional as F

from methods.lora_layers import LowRankUpdate
from methods.tadformer import DynamicTaskFilter, StaticTaskFilters
from pebench.accounting import published_trainable_m
from pebench.errors import PebenchError
from pebench.model import MultiTaskModel
from pebench.params import count_parameters

TASKS = len(PASCAL)


def randomise(model: MultiTaskModel) -> None:
    """Non-zero B and gates, so that no update is trivially zero or evenly mixed."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, LowRankUpdate):
                module.lora_b.normal_(0, 0.1)
        for block in model.method.task_blocks.values():
            block.gate.normal_(0, 1)


def low_rank(update: LowRankUpdate, x: torch.Tensor) -> torch.Tensor:
    return update.scale * (x @ update.lora_a[0] @ update.lora_b[0])


def reference_filter(filters: torch.nn.Module, task: int, x: torch.Tensor) -> torch.Tensor:
    """x (M, r, h, w) through task ``task``'s filter, as the released ``NaiveConvFilter`` and
    ``DTF`` (with its channel ``FilterNorm``) compute it."""
    if isinstance(filters, StaticTaskFilters):
        return F.conv2d(x, filters.weight[task], filters.bias[task], padding=1,
                        groups=x.shape[1])
    m, r, h, w = x.shape
    kernels = filters.generate(x.mean(dim=(2, 3))).reshape(m, r, -1)
    kernels = (kernels - kernels.mean(2, keepdim=True)) / (kernels.std(2, keepdim=True) + 1e-10)
    kernels = kernels.reshape(m, -1) * filters.tap_scale + filters.tap_shift
    out = F.conv2d(x.reshape(1, m * r, h, w), kernels.reshape(m * r, 1, 3, 3), padding=1,
                   groups=m * r)
    return out.reshape(m, r, h, w)


def task_update(update: LowRankUpdate, filters: torch.nn.Module, task: int,
                x: torch.Tensor) -> torch.Tensor:
    """s·B·filter_t(A·x) for x (M, h, w, in)."""
    low = (x @ update.lora_a[0]).permute(0, 3, 1, 2)
    return update.scale * (reference_filter(filters, task, low).permute(0, 2, 3, 1)
                           @ update.lora_b[0])


def reference_block(block: torch.nn.Module, x: torch.Tensor, prompts: torch.Tensor,
                    task_block: torch.nn.Module | None) -> tuple:
    """One block as ``SwinTransformerBlock.forward`` of the released code computes it: the
    shared output, the attended prompts, and, in a task-adapting block, each task's output
    and skip feature."""
    n, h, w, c = x.shape
    attn = block.attn
    ws, shift = block.window_size, block.shift_size
    num_prompts = prompts.shape[1]
    shifted = torch.roll(block.norm1(x), (-shift[0], -shift[1]), (1, 2))
    pad_h, pad_w = -h % ws[0], -w % ws[1]
    windows = window_partition(F.pad(shifted, (0, 0, 0, pad_w, 0, pad_h)), ws)
    windows = windows.reshape(-1, ws[0] * ws[1], c)
    per_image = windows.shape[0] // n
    tokens = torch.cat([block.norm1(prompts).repeat_interleave(per_image, 0), windows], 1)
    length, heads = tokens.shape[1], attn.num_heads
    q, k, v = attn.qkv(tokens).reshape(-1, length, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
    raw = q @ k.transpose(-2, -1)
    scores = raw * attn.scale
    bias = attn.relative_position_bias_table[attn.relative_position_index.view(-1)]
    bias = bias.view(ws[0] * ws[1], ws[0] * ws[1], -1).permute(2, 0, 1)
    scores[:, :, num_prompts:, num_prompts:] += bias
    if block.attn_mask is not None:
        scores = scores.view(n, per_image, heads, length, length)
        scores[..., num_prompts:, num_prompts:] += block.attn_mask.unsqueeze(1)
        scores = scores.view(-1, heads, length, length)
    context = (scores.softmax(-1) @ v).transpose(1, 2).reshape(-1, length, c)

    def in_place(windowed: torch.Tensor) -> torch.Tensor:
        merged = window_reverse(windowed.reshape(-1, *ws, windowed.shape[-1]), ws,
                                h + pad_h, w + pad_w)[:, :h, :w]
        return torch.roll(merged, shift, (1, 2))

    projected = attn.proj(context)
    attended_prompts = projected[:, :num_prompts].reshape(n, per_image, num_prompts, c).mean(1)
    mid = x + in_place(projected[:, num_prompts:])
    out = mid + block.mlp(block.norm2(mid))
    if task_block is None:
        return out, attended_prompts, None
    proj, fc1, fc2 = attn.proj, block.mlp.fc1, block.mlp.fc2
    z = context[:, num_prompts:]
    fc1_frozen = fc1.base(block.norm2(mid))
    fc2_frozen = fc2.base(F.gelu(fc1(block.norm2(mid))))
    gate = torch.sigmoid(task_block.gate)
    per_task = []
    for t in range(num_prompts):
        skip = torch.cat([F.gelu(raw[:, head, t, num_prompts:]).unsqueeze(-1)
                          * z[..., head * (c // heads):(head + 1) * (c // heads)]
                          for head in range(heads)], dim=-1)
        x_t = task_block.prompt_norm(z + skip).reshape(-1, *ws, c)
        a = x + in_place(proj.base(z) + task_update(proj.shared, task_block.proj_filters, t,
                                                    x_t).reshape(z.shape))
        hidden = fc1_frozen + task_update(fc1.shared, task_block.fc1_filters, t, block.norm2(a))
        task_out = a + fc2_frozen + task_update(fc2.shared, task_block.fc2_filters, t,
                                                F.gelu(hidden))
        per_task.append(gate * in_place(skip) + (1 - gate) * task_out)
    return out, attended_prompts, per_task


def reference_taps(model: MultiTaskModel, images: torch.Tensor) -> dict[str, list[torch.Tensor]]:
    method, swin = model.method, model.encoder.model
    x = swin.patch_embed(images)
    prompts = method.prompts.tokens.expand(images.shape[0], -1, -1)
    taps: dict[str, list[torch.Tensor]] = {task: [] for task in NANO}
    outputs: list[torch.Tensor] = []
    layer = 0
    last_layer = sum(len(stage.blocks) for stage in swin.layers) - 1
    for index, stage in enumerate(swin.layers):
        if index:
            x = stage.downsample(x)
            prompts = method.prompts.widen[index - 1](prompts)
        for task, out in zip(NANO, outputs, strict=False):  # none before the first stage
            taps[task].append(stage.downsample(out))
        for block in stage.blocks:
            task_block = method.task_blocks[str(layer)] if block is stage.blocks[-1] else None
            x, attended, per_task = reference_block(block, x, prompts, task_block)
            if layer != last_layer:
                prompts = prompts + block.mlp(block.norm2(attended))
            outputs = per_task or outputs
            layer += 1
    for task, out in zip(NANO, outputs, strict=True):
        taps[task].append(out)
    return {task: [t.permute(0, 3, 1, 2) for t in tapped] for task, tapped in taps.items()}


@pytest.mark.parametrize("filters", ["dynamic", "static"])
def test_taps_match_the_released_codes_computation(filters: str) -> None:
    model = build("tadformer", dropout="0", filters=filters).double().eval()
    randomise(model)
    images = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        ours = model.method.encode(model.encoder, images)
        reference = reference_taps(model, images)
    for task in NANO:
        for mine, theirs in zip(ours[task], reference[task], strict=True):
            torch.testing.assert_close(mine, theirs, rtol=1e-10, atol=1e-10)
    assert not torch.allclose(ours["semseg"][0], ours["normals"][0])


@pytest.mark.parametrize(("rank", "expected", "published"), [
    (16, 3_551_550, 3.56), (32, 4_770_174, 4.78), (64, 7_373_310, 7.38)])
def test_published_setting_counts(rank: int, expected: int, published: float) -> None:
    counts = count_parameters(build("tadformer", PASCAL, "swin-t", 448, meta=True,
                                    rank=str(rank)))
    # Shared LoRA r·(in + out) on qkv (d→3d), proj (d→d), fc1 (d→4d), fc2 (4d→d) of every
    # block; a dynamic filter (1×1 conv r→9r with bias, 9r tap scales and 9r tap shifts) on
    # proj, fc1 and fc2 of each stage's last block; a prompt norm per stage end; the gates;
    # the prompt-widening maps d→2d.
    lora = sum(depth * rank * 16 * d for d, depth in zip(SWIN_T_WIDTHS, SWIN_T_DEPTHS,
                                                         strict=True))
    filters = 4 * 3 * (9 * rank * rank + 9 * rank + 18 * rank)
    task_blocks = filters + sum(2 * d for d in SWIN_T_WIDTHS) + 4
    widen = sum(d * 2 * d for d in SWIN_T_WIDTHS[:3])
    assert counts.encoder_task_specific == TASKS * 96  # the prompts
    assert counts.encoder_shared == lora + task_blocks + widen + swin_t_extras(reductions=False)
    assert counts.decoders == DECODERS_PUBLISHED and counts.other == 0
    assert counts.trainable == expected
    # The released code also builds a prompt LayerNorm for the projection of every other
    # block, trained but never used: 2·d per block, 5,952 on Swin-T. With them the count
    # meets the published one to its rounding.
    unused = sum(depth * 2 * d for d, depth in zip(SWIN_T_WIDTHS, SWIN_T_DEPTHS, strict=True)
                 ) - sum(2 * d for d in SWIN_T_WIDTHS)
    assert unused == 5_952
    assert abs((expected + unused) / 1e6 - published) < 0.005
    assert published_trainable_m()[f"TADFormer (r={rank})"] == published


def test_the_dynamic_filters_kernels_follow_each_input() -> None:
    torch.manual_seed(0)
    filters = DynamicTaskFilter(4, 3).double()
    x = torch.randn(2, 3, 5, 5, 4, dtype=torch.float64)  # (tasks, maps, h, w, r)
    out = filters(x, slice(None))
    for t in range(2):
        for m in range(3):
            single = x[t, m].permute(2, 0, 1).unsqueeze(0)
            expected = reference_filter(filters, 0, single)[0].permute(1, 2, 0)
            torch.testing.assert_close(out[t, m], expected, rtol=1e-12, atol=1e-12)
    # The same input gives the same kernels whichever task it comes from.
    torch.testing.assert_close(filters(x[:1], slice(0, 1)), out[:1])


@pytest.mark.parametrize("filters", ["dynamic", "static"])
def test_loop_and_task_batched_passes_agree(filters: str) -> None:
    assert_loop_and_batched_agree(build("tadformer", dropout="0", filters=filters), NANO)


def test_at_initialisation_the_tasks_differ_only_through_the_skip_features() -> None:
    """B is zero, so every task's stream equals the shared one; the prompt-weighted skip
    features, mixed in by σ(0) = 1/2, are what makes the tasks differ from the first step."""
    images = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    for skip, differ in (("false", False), ("true", True)):
        model = build("tadformer", dropout="0", skip_connection=skip).double().eval()
        with torch.no_grad():
            features = model.method.encode(model.encoder, images)
        for task in list(NANO)[1:]:
            assert torch.allclose(features["semseg"][0], features[task][0]) is not differ


def test_what_trains_and_the_frozen_weights_stay_bit_identical() -> None:
    model = build("tadformer")
    names = {n for n, p in model.encoder.named_parameters() if p.requires_grad}
    lora = {n for n in names if n.endswith(("lora_a", "lora_b"))}
    assert all(n.startswith("model.patch_embed.") or "norm" in n
               or n.endswith("relative_position_bias_table") for n in names - lora)
    assert not any(n.endswith("downsample.reduction.weight") for n in names)
    frozen = {n: p.clone() for n, p in model.encoder.named_parameters() if not p.requires_grad}
    optimizer = torch.optim.AdamW(trainable(model), lr=1e-2)
    for _ in range(2):
        train_step(model, torch.randn(2, 3, 64, 64), optimizer)
    for name, param in model.encoder.named_parameters():
        if name in frozen:
            assert torch.equal(param, frozen[name]), name


def test_configuration_errors() -> None:
    with pytest.raises(PebenchError, match="choose one of dynamic, static"):
        build("tadformer", filters="learnt")
    with pytest.raises(PebenchError, match="filter_size must be odd"):
        build("tadformer", filter_size="4")
    with pytest.raises(PebenchError, match="rank must be ≥ 1"):
        build("tadformer", rank="0")

