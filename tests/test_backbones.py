from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from pebench.backbones import BACKBONES, SwinEncoder
from pebench.errors import PebenchError
from pebench.weights import load_backbone_weights


@pytest.mark.parametrize(("name", "img_size"), [
    ("swin-nano", 128), ("swin-nano", 96), ("swin-t", 448), ("swin-s", 224), ("swin-b", 224),
])
def test_taps_have_published_channels_and_strides(name: str, img_size: int) -> None:
    spec = BACKBONES.get(name)
    encoder = SwinEncoder(spec, img_size).eval()
    with torch.no_grad():
        taps = encoder(torch.randn(1, 3, img_size, img_size))
    assert [t.shape[1] for t in taps] == list(spec.tap_channels)
    assert [img_size // t.shape[-1] for t in taps] == list(spec.tap_strides) == [8, 16, 32, 32]


def test_sizes_that_are_not_multiples_of_32_are_padded_by_timm() -> None:
    encoder = SwinEncoder(BACKBONES.get("swin-nano"), 100).eval()
    with torch.no_grad():
        taps = encoder(torch.randn(1, 3, 100, 100))
    assert [t.shape[-1] for t in taps] == [13, 7, 4, 4]


def test_swin_t_taps_match_the_published_protocol() -> None:
    spec = BACKBONES.get("swin-t")
    assert spec.tap_channels == (192, 384, 768, 768)
    assert spec.default_img_size == 448


def test_encoder_parameters_are_timm_swin_without_head_and_final_norm() -> None:
    import timm

    encoder = SwinEncoder(BACKBONES.get("swin-t"), 224)
    reference = timm.create_model("swin_tiny_patch4_window7_224", pretrained=False,
                                  num_classes=0)
    ours = sum(p.numel() for p in encoder.parameters())
    theirs = sum(p.numel() for n, p in reference.named_parameters() if not n.startswith("norm."))
    assert ours == theirs == 27_517_818


def _to_microsoft_format(state: dict[str, torch.Tensor]) -> dict[str, object]:
    """Write a timm state dict the way the original Swin release stores it."""
    converted: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        key = re.sub(r"layers\.(\d+)\.downsample",
                     lambda m: f"layers.{int(m.group(1)) - 1}.downsample", key)
        converted[key] = value
        if key.endswith("relative_position_bias_table"):
            prefix = key[: -len("relative_position_bias_table")]
            converted[prefix + "relative_position_index"] = torch.zeros(49, 49, dtype=torch.long)
    converted["norm.weight"] = torch.ones(768)
    converted["norm.bias"] = torch.zeros(768)
    converted["head.weight"] = torch.zeros(1000, 768)
    converted["head.bias"] = torch.zeros(1000)
    return {"model": converted}


def test_loads_original_microsoft_checkpoint_at_448(tmp_path: Path) -> None:
    torch.manual_seed(1)
    source = SwinEncoder(BACKBONES.get("swin-t"), 224)
    path = tmp_path / "swin_tiny_patch4_window7_224.pth"
    torch.save(_to_microsoft_format(source.backbone_state_dict()), path)

    target = SwinEncoder(BACKBONES.get("swin-t"), 448)
    load_backbone_weights(target, path)
    for key, value in source.backbone_state_dict().items():
        assert torch.equal(target.model.state_dict()[key], value), key


def test_loads_timm_checkpoint_and_resizes_relative_position_tables(tmp_path: Path) -> None:
    import timm

    torch.manual_seed(2)
    window12 = timm.create_model("swin_base_patch4_window12_384", pretrained=False)
    path = tmp_path / "swin_base_384.pth"
    torch.save(window12.state_dict(), path)
    target = SwinEncoder(BACKBONES.get("swin-b"), 224)
    load_backbone_weights(target, path)
    table = target.model.layers[0].blocks[0].attn.relative_position_bias_table
    assert table.shape == (13 * 13, 4)
    qkv = window12.state_dict()["layers.2.blocks.5.attn.qkv.weight"]
    assert torch.equal(target.model.layers[2].blocks[5].attn.qkv.weight, qkv)


def test_embedded_weights_load_into_swin_nano(nano_weights: Path) -> None:
    encoder = SwinEncoder(BACKBONES.get("swin-nano"), 128)
    before = encoder.model.layers[1].blocks[0].attn.qkv.weight.clone()
    load_backbone_weights(encoder, nano_weights)
    assert not torch.equal(before, encoder.model.layers[1].blocks[0].attn.qkv.weight)


@pytest.mark.parametrize(("content", "message"), [
    (None, "does not exist"),
    (b"not a checkpoint at all", "could not read weights file"),
])
def test_unreadable_weights_are_one_clear_error(tmp_path: Path, content: bytes | None,
                                                message: str) -> None:
    path = tmp_path / "weights.pth"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(PebenchError, match=message):
        load_backbone_weights(SwinEncoder(BACKBONES.get("swin-nano"), 128), path)


def test_checkpoint_of_another_size_is_a_mismatch(tmp_path: Path) -> None:
    path = tmp_path / "swin_t.pth"
    torch.save(SwinEncoder(BACKBONES.get("swin-t"), 224).backbone_state_dict(), path)
    with pytest.raises(PebenchError, match=r"does not match backbone .swin-s.*missing"):
        load_backbone_weights(SwinEncoder(BACKBONES.get("swin-s"), 224), path)


def test_block_surface_places_modules_on_the_residual_branches() -> None:
    encoder = SwinEncoder(BACKBONES.get("swin-nano"), 64)
    sites = list(encoder.blocks())
    assert [(s.stage, s.index, s.layer, s.dim) for s in sites[:3]] == [
        (0, 0, 0, 32), (0, 1, 1, 32), (1, 0, 2, 64)]
    assert len(encoder.patch_mergings()) == 3

    calls: list[tuple[str, tuple[int, ...]]] = []

    class Probe(torch.nn.Module):
        def __init__(self, where: str) -> None:
            super().__init__()
            self.where = where

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            calls.append((self.where, tuple(x.shape)))
            return torch.zeros_like(x)

    site = sites[0]
    site.add_after_attention(Probe("attn"))
    site.add_after_mlp(Probe("mlp"))
    x = torch.randn(2, 16, 16, 32)
    out = site.block(x)
    assert [c[0] for c in calls] == ["attn", "mlp"]
    # Both branches zeroed: the block reduces to its two residual connections.
    torch.testing.assert_close(out, x)
    assert isinstance(site.linear("attn.qkv"), torch.nn.Linear)
    with pytest.raises(ValueError, match=r"valid: attn\.qkv"):
        site.linear("attn.qkvv")
