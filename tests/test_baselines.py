"""BitFit, LoRA and the bottleneck adapters (Houlsby, Pfeiffer, VL-Adapter): counts in the
published setting, shapes on every Swin, identity at initialisation, trainability, frozen
weights, loop/batched equivalence and the shared form."""

from __future__ import annotations

import pytest
import torch
from method_testing import (
    DECODERS_PUBLISHED,
    NANO,
    PASCAL,
    SWIN_T_LAYER_NORM_WIDTHS,
    assert_loop_and_batched_agree,
    build,
    per_swin_t_block,
    train_step,
    trainable,
)

from methods.adapter_layers import BottleneckAdapter
from methods.task_layers import TaskLayerNorm
from pebench.errors import PebenchError
from pebench.model import MultiTaskModel
from pebench.params import count_parameters

PER_TASK = ("bitfit", "lora", "adapter", "pfeiffer-adapter")
BASELINES = (*PER_TASK, "vl-adapter")
TASKS = len(PASCAL)


def published_counts(method: str, **overrides: str) -> object:
    return count_parameters(build(method, PASCAL, "swin-t", 448, meta=True, **overrides))


def test_bitfit_counts_every_bias_term_and_position_table_once_per_task() -> None:
    counts = published_counts("bitfit")
    # qkv 3d + proj d + fc1 4d + fc2 d per block, LayerNorm shifts, the patch-embedding conv.
    biases = per_swin_t_block(lambda d: 9 * d) + SWIN_T_LAYER_NORM_WIDTHS + 96
    assert biases == 51_456
    # A (2·7 − 1)² × heads table per block: heads 3, 6, 12, 24 over depths 2, 2, 6, 2.
    tables = 13 * 13 * (2 * 3 + 2 * 6 + 6 * 12 + 2 * 24)
    assert tables == 23_322
    assert counts.encoder_task_specific == TASKS * (biases + tables)
    # Published 2.85M, which holds the 0.60M every published row but decoders-only carries.
    assert counts.trainable == DECODERS_PUBLISHED + TASKS * (biases + tables) == 2_245_736
    without = published_counts("bitfit", position_bias="false")
    assert without.trainable == DECODERS_PUBLISHED + TASKS * biases == 2_152_448


def test_lora_counts_rank_times_fan_in_plus_fan_out() -> None:
    counts = published_counts("lora")
    assert counts.encoder_task_specific == TASKS * per_swin_t_block(lambda d: 4 * (d + 3 * d))
    assert counts.trainable == 2_229_248
    every_linear = published_counts("lora", rank="8", targets="attn.qkv,attn.proj,mlp.fc1,mlp.fc2")
    fans = per_swin_t_block(lambda d: (d + 3 * d) + (d + d) + (d + 4 * d) + (4 * d + d))
    assert every_linear.encoder_task_specific == TASKS * 8 * fans


def test_adapter_counts_bottleneck_weights_and_layer_norms() -> None:
    def adapters(reduction: int, positions: int) -> int:
        def one(d: int) -> int:
            k = d // reduction
            return positions * (2 * d * k + k + d)

        return per_swin_t_block(one)

    houlsby = published_counts("adapter")
    assert houlsby.encoder_task_specific == TASKS * (adapters(4, 2) + 2 * SWIN_T_LAYER_NORM_WIDTHS)
    assert houlsby.trainable == 10_709_888
    pfeiffer = published_counts("pfeiffer-adapter")
    assert pfeiffer.encoder_task_specific == TASKS * adapters(16, 1)
    vl = published_counts("vl-adapter")
    assert vl.encoder_task_specific == 0
    assert vl.encoder_shared == adapters(4, 2) + 2 * SWIN_T_LAYER_NORM_WIDTHS
    assert vl.trainable == 4_137_440


@pytest.mark.parametrize("method", PER_TASK)
def test_shared_form_holds_one_set_counted_as_shared(method: str) -> None:
    per_task = count_parameters(build(method, PASCAL, "swin-t", 112, meta=True))
    shared = count_parameters(build(method, PASCAL, "swin-t", 112, meta=True, shared="true"))
    assert shared.encoder_task_specific == 0
    assert shared.encoder_shared * TASKS == per_task.encoder_task_specific > 0
    model = build(method, shared="true")
    assert not model.method.task_specific_encoder
    features = model.method.encode(model.encoder, torch.randn(1, 3, 64, 64))
    assert all(features[task] is features["semseg"] for task in NANO)


def test_vl_adapter_refuses_per_task_adapters() -> None:
    with pytest.raises(PebenchError, match="shares one adapter set by definition"):
        build("vl-adapter", shared="false")


def backbone_only() -> MultiTaskModel:
    """The same seeded backbone with no method attached (decoder-only)."""
    return build("decoder-only")


@pytest.mark.parametrize("method", ["bitfit", "lora"])
def test_exactly_the_frozen_encoder_at_initialisation(method: str) -> None:
    # BitFit copies the pretrained biases, LoRA starts with B = 0 (Hu et al., Sec. 4.1). In
    # float64, where two code paths (batched per-task weights against nn.Linear) differ only
    # by rounding, ~1e-16 relative: 1e-12 holds on any CPU's kernels and still sees a bias.
    images = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    reference = backbone_only().double().encoder(images)
    model = build(method).double().eval()
    with torch.no_grad():
        adapted = model.method.encode(model.encoder, images)
    for task in NANO:
        for ours, frozen in zip(adapted[task], reference, strict=True):
            torch.testing.assert_close(ours, frozen, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("method", ["adapter", "pfeiffer-adapter", "vl-adapter"])
def test_adapters_start_near_the_identity(method: str) -> None:
    # Houlsby's initialisation (std 0.01, truncated): near-identity by design, not exact.
    # float64, so that "exact" means up to rounding on any CPU (see above).
    images = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    reference = backbone_only().double().encoder(images)
    with torch.no_grad():
        model = build(method).double()
        adapted = model.method.encode(model.encoder, images)
        exact = build(method, init_std="0").double()
        identity = exact.method.encode(exact.encoder, images)
    for ours, zero_init, frozen in zip(adapted["semseg"], identity["semseg"], reference,
                                       strict=True):
        relative = (ours - frozen).norm() / frozen.norm()
        assert 0 < relative < 0.02
        torch.testing.assert_close(zero_init, frozen, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("method", BASELINES)
def test_only_the_method_trains_and_frozen_weights_stay_bit_identical(method: str) -> None:
    model = build(method)
    frozen = {n: p.clone() for n, p in model.encoder.named_parameters() if not p.requires_grad}
    start = {n: p.clone() for n, p in model.named_parameters() if p.requires_grad}
    encoder_trainable = [n for n, p in model.encoder.named_parameters() if p.requires_grad]
    assert encoder_trainable, "the method must add trainable encoder parameters"
    optimizer = torch.optim.AdamW(trainable(model), lr=1e-2)
    for _ in range(2):
        train_step(model, torch.randn(2, 3, 64, 64), optimizer)
    for name, value in model.encoder.named_parameters():
        if name in frozen:
            assert torch.equal(value, frozen[name]), name
    now = dict(model.encoder.named_parameters())
    moved = {n for n in encoder_trainable if not torch.equal(now[n], start[f"encoder.{n}"])}
    assert moved == set(encoder_trainable)


def test_what_each_method_trains() -> None:
    def trainable_kinds(method: str) -> set[str]:
        model = build(method)
        return {type(m).__name__ for m in model.encoder.modules()
                if any(p.requires_grad for p in m.parameters(recurse=False))}

    assert trainable_kinds("bitfit") == {"TaskBias", "TaskWindowAttention"}
    assert trainable_kinds("lora") == {"LowRankUpdate"}
    assert trainable_kinds("adapter") == {"BottleneckAdapter", "TaskLayerNorm"}
    assert trainable_kinds("pfeiffer-adapter") == {"BottleneckAdapter"}
    houlsby, pfeiffer = build("adapter"), build("pfeiffer-adapter")
    for model, per_block_adapters in ((houlsby, 2), (pfeiffer, 1)):
        blocks = list(model.encoder.blocks())
        adapters = [m for m in model.encoder.modules() if isinstance(m, BottleneckAdapter)]
        assert len(adapters) == per_block_adapters * len(blocks)
        assert all(isinstance(b.block.drop_path2.modules_after[0], BottleneckAdapter)
                   for b in blocks)
    assert sum(isinstance(m, TaskLayerNorm) for m in houlsby.encoder.modules()) == (
        2 * 8 + 3 + 1)  # swin-nano: 8 blocks, 3 patch mergings, the patch embedding


@pytest.mark.parametrize("method", PER_TASK)
def test_loop_and_task_batched_passes_agree(method: str) -> None:
    assert_loop_and_batched_agree(build(method), NANO)


def test_adapter_widths_are_checked_before_training() -> None:
    with pytest.raises(PebenchError, match="reduction=3 must divide every stage width"):
        build("adapter", reduction="3")
    with pytest.raises(PebenchError, match=r"targets attn\.q must be among"):
        build("lora", targets="attn.q")
