"""MTLoRA: published counts, the task branch against a reference built from merged weights and
timm's own block, identity at initialisation, one shared pass, loop/batched equivalence,
what trains, and configuration errors."""

from __future__ import annotations

import copy

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
from torch import nn
from torch.nn import functional as F

from methods.lora_layers import LowRankUpdate
from methods.mtlora import AdaptedLinear
from pebench.accounting import published_trainable_m
from pebench.backbones import BACKBONES, SwinEncoder
from pebench.errors import PebenchError
from pebench.model import MultiTaskModel
from pebench.params import count_parameters

TASKS = len(PASCAL)


@pytest.mark.parametrize(("rank", "expected", "published"), [
    (16, 4_953_146, 4.95), (64, 8_344_634, 8.34)])
def test_published_setting_counts(rank: int, expected: int, published: float) -> None:
    counts = count_parameters(build("mtlora", PASCAL, "swin-t", 448, meta=True, rank=str(rank)))
    # TA-LoRA r·(in + out) on qkv (d→3d), proj (d→d), fc1 (d→4d), fc2 (4d→d) of every block.
    ta = sum(depth * rank * 16 * d for d, depth in zip(SWIN_T_WIDTHS, SWIN_T_DEPTHS,
                                                       strict=True))
    # TS-LoRA rank 4 on proj, fc1, fc2 of each stage's last block, one set per task.
    ts = TASKS * sum(4 * (2 * d + 5 * d + 5 * d) for d in SWIN_T_WIDTHS)
    assert ts == 276_480 == counts.encoder_task_specific
    assert counts.encoder_shared == ta + swin_t_extras()
    assert counts.decoders == DECODERS_PUBLISHED and counts.other == 0
    assert counts.trainable == expected
    assert abs(expected / 1e6 - published) < 0.005  # the published figure, to its rounding
    if rank == 16:
        assert published_trainable_m()["MTLoRA (r=16)"] == published


def reference_encoder() -> SwinEncoder:
    """The frozen encoder ``build`` starts from (same seed, same construction order)."""
    torch.manual_seed(0)
    return SwinEncoder(BACKBONES.get("swin-nano"), 64).double()


def randomise_updates(model: MultiTaskModel) -> None:
    """Non-zero B everywhere, so that no update is trivially zero."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, LowRankUpdate):
                module.lora_b.normal_(0, 0.1)


def delta(update: LowRankUpdate, index: int) -> torch.Tensor:
    """The (out, in) weight that the update adds for weight set ``index``."""
    return update.scale * (update.lora_a[index] @ update.lora_b[index]).T


def low_rank(update: LowRankUpdate, index: int, x: torch.Tensor) -> torch.Tensor:
    return x @ delta(update, index).T


def reference_taps(model: MultiTaskModel, images: torch.Tensor) -> dict[str, list[torch.Tensor]]:
    """MTLoRA's taps computed the way the released code computes them: LoRA merged into the
    weights of timm's unmodified blocks (attention projection inside the window attention),
    and each task's stream of a stage's last block written out from the paper's equations."""
    reference = reference_encoder()
    ours = list(model.encoder.blocks())
    taps: dict[str, list[torch.Tensor]] = {task: [] for task in NANO}
    outputs: list[torch.Tensor] = []
    x = reference.model.patch_embed(images)
    sites = iter(zip(reference.blocks(), ours, strict=True))
    for stage in reference.model.layers:
        x = stage.downsample(x)
        for task, out in zip(NANO, outputs, strict=False):  # none before the first stage
            taps[task].append(stage.downsample(out))
        for reference_site, site in (next(sites) for _ in stage.blocks):
            block = reference_site.block
            fc1, fc2 = site.linear("mlp.fc1"), site.linear("mlp.fc2")
            stage_end = fc1.tasks is not None  # the task branch of the stage's last block
            with torch.no_grad():
                for name, ours_linear in (("attn.qkv", site.linear("attn.qkv")),
                                          ("mlp.fc1", fc1), ("mlp.fc2", fc2)):
                    block.get_submodule(name).weight += delta(ours_linear.shared, 0)
            if not stage_end:
                with torch.no_grad():
                    block.attn.proj.weight += delta(site.linear("attn.proj").shared, 0)
                x = block(x)
                continue
            attention: AdaptedLinear = site.block.drop_path1.modules_after[0]
            shared_block = copy.deepcopy(block)
            with torch.no_grad():
                shared_block.attn.proj.weight += delta(attention.shared, 0)
            x_mid = x + shared_block._attn(block.norm1(x))
            n = block.norm2(x_mid)
            g = F.gelu(shared_block.mlp.fc1(n))
            outputs = []
            for t in range(len(NANO)):
                task_block = copy.deepcopy(block)
                with torch.no_grad():
                    task_block.attn.proj.weight += delta(attention.tasks, t)
                a = x + task_block._attn(block.norm1(x))
                h = F.linear(n, fc1.base.weight, fc1.base.bias) + low_rank(
                    fc1.tasks, t, block.norm2(a))
                outputs.append(a + F.linear(g, fc2.base.weight, fc2.base.bias)
                               + low_rank(fc2.tasks, t, F.gelu(h)))
            x = x_mid + shared_block.mlp.fc2(g)
    for task, out in zip(NANO, outputs, strict=True):
        taps[task].append(out)
    return {task: [t.permute(0, 3, 1, 2) for t in tapped] for task, tapped in taps.items()}


def test_task_taps_match_merged_weights_in_timms_own_blocks() -> None:
    model = build("mtlora").double().eval()
    randomise_updates(model)
    images = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        ours = model.method.encode(model.encoder, images)
        reference = reference_taps(model, images)
    for task in NANO:
        for mine, theirs in zip(ours[task], reference[task], strict=True):
            torch.testing.assert_close(mine, theirs, rtol=1e-10, atol=1e-10)
    assert not torch.allclose(ours["semseg"][0], ours["normals"][0])


def test_every_task_starts_at_the_frozen_encoder() -> None:
    model = build("mtlora").double().eval()
    images = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        frozen = reference_encoder()(images)
        features = model.method.encode(model.encoder, images)
    for task in NANO:
        for ours, reference in zip(features[task], frozen, strict=True):
            torch.testing.assert_close(ours, reference, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("execution", ["loop", "batched"])
def test_the_shared_stream_runs_once(execution: str) -> None:
    model = build("mtlora", execution=execution)
    batches = []
    for site in model.encoder.blocks():
        site.block.attn.register_forward_hook(lambda m, args, out: batches.append(args[0].shape))
    model.prepare()
    model(torch.randn(2, 3, 64, 64))
    blocks = len(list(model.encoder.blocks()))
    # One attention call per block, each on the B images' windows (swin-nano's first stage at
    # 64 px: 16×16 tokens in 3×3 windows, padded to 18×18: 36 windows per image).
    assert len(batches) == blocks == 8
    assert batches[0][0] == 2 * 36


def test_loop_and_task_batched_passes_agree() -> None:
    assert_loop_and_batched_agree(build("mtlora", dropout="0"), NANO)


def test_what_trains_and_the_frozen_weights_stay_bit_identical() -> None:
    model = build("mtlora")
    names = {n for n, p in model.encoder.named_parameters() if p.requires_grad}
    lora = {n for n in names if n.endswith(("lora_a", "lora_b"))}
    extras = names - lora
    assert all(n.startswith("model.patch_embed.") or "norm" in n
               or n.endswith("relative_position_bias_table") or ".downsample." in n
               for n in extras)
    assert any(n.endswith("downsample.reduction.weight") for n in extras)
    assert any(n.startswith("model.patch_embed.proj") for n in extras)
    frozen = {n: p.clone() for n, p in model.encoder.named_parameters() if not p.requires_grad}
    assert all(n.endswith((".weight", ".bias")) and ".base." in n for n in frozen)
    optimizer = torch.optim.AdamW(trainable(model), lr=1e-2)
    for _ in range(2):
        train_step(model, torch.randn(2, 3, 64, 64), optimizer)
    for name, param in model.encoder.named_parameters():
        if name in frozen:
            assert torch.equal(param, frozen[name]), name
    task_b = [m.lora_b for m in model.modules()
              if isinstance(m, LowRankUpdate) and m.lora_b.shape[0] == len(NANO)]
    assert len(task_b) == 3 * 4 and all(b.abs().sum() > 0 for b in task_b)


def test_extras_can_be_frozen_and_the_shared_updates_are_one_set() -> None:
    model = build("mtlora", train_patch_embed="false", train_layer_norms="false",
                  train_position_bias="false", train_patch_merging="false")
    names = [n for n, p in model.encoder.named_parameters() if p.requires_grad]
    assert names and all(n.endswith(("lora_a", "lora_b")) for n in names)
    qkv = next(model.encoder.blocks()).linear("attn.qkv")
    assert isinstance(qkv, AdaptedLinear) and qkv.shared.lora_a.shape == (1, 32, 16)


def test_the_shared_pass_is_the_blocks_own_forward() -> None:
    """MTLoRA runs a stage's last block step by step; timm's forward of the same block (with
    the projection moved after the window merging) must give the same shared stream."""
    model = build("mtlora").double().eval()
    randomise_updates(model)
    for layer, stage_end in model.method._stage_ends.items():
        site = next(s for s in model.encoder.blocks() if s.layer == layer)
        side = 16 >> site.stage  # the stage's token grid at 64 px
        tokens = torch.randn(2, side, side, site.dim, dtype=torch.float64)
        with torch.no_grad():
            torch.testing.assert_close(stage_end.shared_pass(tokens)[0], site.block(tokens),
                                       rtol=1e-12, atol=1e-12)


def test_configuration_errors() -> None:
    with pytest.raises(PebenchError, match=r"attn\.qkv cannot be task-specific"):
        build("mtlora", task_targets="attn.qkv,mlp.fc1")
    with pytest.raises(PebenchError, match="task_rank must be ≥ 1"):
        build("mtlora", task_rank="0")
    with pytest.raises(PebenchError, match=r"targets mlp\.fc3 must be among"):
        build("mtlora", targets="mlp.fc3")


def test_task_targets_and_targets_are_honoured() -> None:
    counts = count_parameters(build("mtlora", PASCAL, "swin-t", 448, meta=True,
                                    task_targets="mlp.fc2", targets="attn.qkv"))
    assert counts.encoder_task_specific == TASKS * sum(4 * 5 * d for d in SWIN_T_WIDTHS)
    model = build("mtlora", task_targets="mlp.fc2", targets="attn.qkv", dropout="0")
    assert isinstance(model.encoder.model.layers[0].blocks[1].attn.proj, nn.Identity)
    assert_loop_and_batched_agree(model, NANO)
