"""VPT-shallow and VPT-deep: counts, shapes, prompts through windows, masks and merging,
loop/batched equivalence, shared prompts, frozen backbone, config errors."""

from __future__ import annotations

import pytest
import torch
from method_testing import NANO, PASCAL, assert_loop_and_batched_agree, build
from torch import nn

from methods.vpt import PromptedSwin
from pebench import accounting
from pebench.backbones import BACKBONES, SwinEncoder
from pebench.config import method_config
from pebench.errors import PebenchError
from pebench.params import count_parameters
from pebench.prompted_swin import merge_with_prompts, prompted_block

VPT = ("vpt-shallow", "vpt-deep")
# Swin-T: 2-2-6-2 blocks of widths 96-192-384-768; VPT-deep has a prompt set per block.
SWIN_T_BLOCK_WIDTHS = 2 * 96 + 2 * 192 + 6 * 384 + 2 * 768


def _loss(out: dict[str, torch.Tensor]) -> torch.Tensor:
    return sum(o.square().mean() for o in out.values())


def test_published_setting_counts() -> None:
    shallow, deep = (count_parameters(build(m, PASCAL, "swin-t", 448, meta=True)) for m in VPT)
    # 4 tasks × 50 prompts × the width they are inserted at.
    assert shallow.encoder_task_specific == 4 * 50 * 96 == 19_200
    assert deep.encoder_task_specific == 4 * 50 * SWIN_T_BLOCK_WIDTHS == 883_200
    assert shallow.trainable == 1_946_624 + 19_200  # published 2.57M
    assert deep.trainable == 1_946_624 + 883_200  # published 3.43M
    # The published deep − shallow difference (0.86M) is exactly the deep prompts' share.
    assert round((deep.trainable - shallow.trainable) / 1e6, 2) == 0.86  # 3.43M − 2.57M
    for counts in (shallow, deep):
        assert counts.decoders == 1_946_624
        assert counts.encoder_shared == counts.other == 0
        assert counts.total == counts.trainable + 27_517_818


def test_pebench_params_builds_on_meta_and_shows_the_published_counts() -> None:
    rows = accounting.count_methods(accounting.resolve_setting(), list(VPT)).rows
    assert [(r.method, r.built_on, r.published_m) for r in rows] == [
        ("vpt-shallow", "meta", 2.57), ("vpt-deep", "meta", 3.43)]


@pytest.mark.parametrize("method", VPT)
def test_shared_prompts_are_one_set_counted_as_shared(method: str) -> None:
    counts = count_parameters(build(method, PASCAL, "swin-t", 448, meta=True, shared="true"))
    widths = SWIN_T_BLOCK_WIDTHS if method == "vpt-deep" else 96
    assert counts.encoder_shared == 50 * widths
    assert counts.encoder_task_specific == counts.other == 0
    assert build(method, meta=True).method.task_specific_encoder
    assert not build(method, meta=True, shared="true").method.task_specific_encoder


@pytest.mark.parametrize("method", VPT)
def test_shared_prompts_run_the_encoder_once_for_every_task(method: str) -> None:
    model = build(method, shared="true").eval()
    calls = []
    model.encoder.register_forward_hook(lambda *_: calls.append(1))
    with torch.no_grad():
        features = model.method.encode(model.encoder, torch.randn(2, 3, 64, 64))
    assert len(calls) == 1
    assert all(features[task] is features["semseg"] for task in NANO)


@pytest.mark.parametrize("method", VPT)
@pytest.mark.parametrize("img_size", [64, 96])  # 64: stage grids padded to whole windows
def test_taps_hold_image_tokens_only_and_prompts_change_them(method: str, img_size: int) -> None:
    model = build(method, img_size=img_size).double().eval()
    encoder = model.encoder
    assert isinstance(encoder, PromptedSwin)
    images = torch.randn(2, 3, img_size, img_size, dtype=torch.float64)
    with torch.no_grad():
        frozen = encoder.swin(images)
        with encoder.task_context.single(0):
            prompted = encoder(images)
        # Without prompt tokens the prompted pass is exactly the frozen Swin: windows, shift,
        # mask, relative-position bias and merging are the backbone's own.
        encoder.prompts.layers = nn.ParameterList(
            nn.Parameter(torch.zeros(1, 0, p.shape[-1], dtype=torch.float64))
            for p in encoder.prompts.layers)
        without = encoder(images)
    for ours, reference, none in zip(prompted, frozen, without, strict=True):
        assert ours.shape == reference.shape  # prompts are dropped from every tap
        torch.testing.assert_close(none, reference, rtol=1e-12, atol=1e-12)
        assert (ours - reference).abs().mean() > 1e-3 * reference.abs().mean()


def test_prompts_attend_to_every_token_of_shifted_windows_and_are_attended() -> None:
    encoder = SwinEncoder(BACKBONES.get("swin-nano"), 48).double()
    site = next(s for s in encoder.blocks() if s.stage == 0 and s.index == 1)
    block = site.block
    assert block.shift_size == (1, 1) and block.attn_mask is not None
    # The frozen mask separates regions inside the windows that the cyclic shift wrapped.
    assert (block.attn_mask < 0).any()
    x = torch.randn(1, 12, 12, site.dim, dtype=torch.float64, requires_grad=True)
    prompts = torch.randn(1, 3, site.dim, dtype=torch.float64, requires_grad=True)
    out_x, out_prompts = prompted_block(block, x, prompts)
    # A masked pair still has an attention weight of about e^-100 (timm masks with -100), so
    # "reaches" means a gradient far above that.
    # Every image token, whatever its region, reaches the prompts' outputs ...
    (grad_x,) = torch.autograd.grad(out_prompts.sum(), x, retain_graph=True)
    assert grad_x.abs().sum(-1).min() > 1e-8
    # ... and the prompts reach every image token's output, in every window.
    reach = [torch.autograd.grad(out_x[0, h, w].sum(), prompts, retain_graph=True)[0]
             for h in range(12) for w in range(12)]
    assert min(g.abs().sum().item() for g in reach) > 1e-8


def test_a_prompt_goes_through_patch_merging_as_a_2x2_group_of_itself() -> None:
    # float64: the two paths (prompts merged as 2×2 groups, and the merging of a 2×2 patch)
    # differ only by rounding, so the default float64 tolerance holds on any CPU.
    encoder = SwinEncoder(BACKBONES.get("swin-nano"), 64)
    merging = encoder.patch_mergings()[0].double()
    prompts = torch.randn(2, 3, 32, dtype=torch.float64)
    x = torch.randn(2, 16, 16, 32, dtype=torch.float64)
    merged_x, merged_prompts = merge_with_prompts(merging, x, prompts)
    torch.testing.assert_close(merged_x, merging(x))
    assert merged_prompts.shape == (2, 3, 64)
    for index in range(3):
        patch = prompts[:, index, None, None, :].expand(2, 2, 2, 32)
        torch.testing.assert_close(merged_prompts[:, index], merging(patch)[:, 0, 0])


@pytest.mark.parametrize("method", VPT)
def test_only_prompts_and_decoders_train_and_the_backbone_stays_bit_identical(
        method: str) -> None:
    model = build(method)
    prompt_names = {n for n, _ in model.named_parameters() if ".prompts." in n}
    trainable = {n: p.clone() for n, p in model.named_parameters() if p.requires_grad}
    assert prompt_names
    assert all(n in prompt_names or n.startswith("decoders.") for n in trainable)
    backbone = {k: v.clone() for k, v in model.encoder.swin.state_dict().items()}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(2):
        model.prepare()
        optimizer.zero_grad()
        _loss(model(torch.randn(2, 3, 64, 64))).backward()
        # Every prompt set is used: VPT-deep's fresh set of every block gets a gradient.
        assert all(model.get_parameter(n).grad.abs().sum() > 0 for n in prompt_names)
        optimizer.step()
    for key, value in model.encoder.swin.state_dict().items():
        assert torch.equal(value, backbone[key]), key
    assert all(not torch.equal(model.get_parameter(n), trainable[n]) for n in prompt_names)


@pytest.mark.parametrize("method", VPT)
def test_loop_and_task_batched_passes_agree(method: str) -> None:
    model = build(method)
    assert_loop_and_batched_agree(model, NANO)


@pytest.mark.parametrize(("key", "value", "message"), [
    ("num_prompts", "0", "num_prompts must be ≥ 1, got 0"),
    ("dropout", "1.5", r"dropout must be in \[0, 1\), got 1.5"),
])
def test_bad_hyperparameters_are_refused_with_a_clear_message(
        key: str, value: str, message: str) -> None:
    with pytest.raises(PebenchError, match=message):
        method_config("vpt-deep", {key: value})
