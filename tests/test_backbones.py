from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from timm.models.swin_transformer import get_relative_position_index

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


RELEASE_RESOLUTION = 224  # the original checkpoints were trained at 224, window 7


def _original_release_checkpoint(name: str, classes: int
                                 ) -> tuple[dict[str, object], dict[str, torch.Tensor]]:
    """A checkpoint laid out as the original Microsoft release saves it, and the timm-layout
    values it should load as.

    Original layout: ``{"model": state_dict}``; patch merging at the end of stages 0-2
    (``layers.N.downsample``, timm's ``layers.N+1.downsample``); the persistent buffers
    ``relative_position_index`` of every block and ``attn_mask`` of the shifted blocks of
    stages whose resolution exceeds the window; the final ``norm`` and ``head`` (1,000 classes
    for ImageNet-1k, 21,841 for ImageNet-22k). Every tensor is a view into one random storage
    at its own offset, so each holds distinct values while the file stays small.
    """
    spec = BACKBONES.get(name)
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in SwinEncoder(spec, RELEASE_RESOLUTION).model.state_dict()
                  .items()}
    generator = torch.Generator().manual_seed(len(name) * 1000 + classes)
    base = torch.randn(max(s.numel() for s in shapes.values()) + len(shapes),
                       generator=generator)
    expected = {key: base[i:i + shape.numel()].view(shape)
                for i, (key, shape) in enumerate(shapes.items())}
    window = spec.window_size
    model: dict[str, torch.Tensor] = {}
    for key, value in expected.items():
        key = re.sub(r"layers\.(\d+)\.downsample",
                     lambda m: f"layers.{int(m.group(1)) - 1}.downsample", key)
        model[key] = value
        block = re.match(r"(layers\.(\d+)\.blocks\.(\d+)\.)attn\.relative_position_bias_table",
                         key)
        if block is None:
            continue
        prefix, stage, index = block.group(1), int(block.group(2)), int(block.group(3))
        model[prefix + "attn.relative_position_index"] = get_relative_position_index(
            window, window)
        side = RELEASE_RESOLUTION // spec.patch_size // 2**stage
        if index % 2 == 1 and side > window:  # shifted window: a mask per window
            model[prefix + "attn_mask"] = torch.zeros(1, window**2, window**2).expand(
                (side // window) ** 2, -1, -1)
    width = spec.stage_dims[-1]
    model["norm.weight"], model["norm.bias"] = base[:width], base[1:width + 1]
    model["head.weight"] = base[:width].expand(classes, width)
    model["head.bias"] = base[:classes] if classes <= base.numel() else torch.zeros(classes)
    return {"model": model}, expected


@pytest.mark.parametrize("name", ["swin-t", "swin-s", "swin-b"])
@pytest.mark.parametrize("classes", [1000, 21841], ids=["in1k", "in22k"])
def test_original_release_checkpoint_loads_at_448(tmp_path: Path, name: str,
                                                  classes: int) -> None:
    checkpoint, expected = _original_release_checkpoint(name, classes)
    path = tmp_path / f"{name}_patch4_window7_224.pth"
    torch.save(checkpoint, path)

    with torch.device("meta"):  # no random init of 88M parameters: every one is loaded
        encoder = SwinEncoder(BACKBONES.get(name), 448)
    encoder.to_empty(device="cpu")
    load_backbone_weights(encoder, path)

    loaded = encoder.model.state_dict()
    assert loaded.keys() == expected.keys()
    for key, value in expected.items():
        assert torch.equal(loaded[key], value), key
    original = checkpoint["model"]
    assert isinstance(original, dict)
    first_merging = encoder.patch_mergings()[0]
    assert torch.equal(first_merging.reduction.weight,
                       original["layers.0.downsample.reduction.weight"])
    assert torch.equal(encoder.model.layers[3].downsample.norm.bias,
                       original["layers.2.downsample.norm.bias"])


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


def test_layer_accessors_and_the_one_tap_loop() -> None:
    torch.manual_seed(0)
    encoder = SwinEncoder(BACKBONES.get("swin-nano"), 64).eval()
    norms = encoder.layers_of(torch.nn.LayerNorm)
    # Two per block, one per patch merging, one in the patch embedding; no final norm.
    assert len(norms) == 2 * 8 + 3 + 1
    assert len(encoder.position_bias_tables()) == 8
    assert encoder.patch_embedding() is encoder.model.patch_embed
    site = next(encoder.blocks())
    assert site.submodule("norm2") is site.block.norm2
    with pytest.raises(ValueError, match=r"valid: norm1, attn, norm2, mlp"):
        site.submodule("norm3")
    # The steps see every block (with its layer index) and every merging, in order.
    images = torch.randn(2, 3, 64, 64)
    seen: list[object] = []

    def block(module: torch.nn.Module, layer: int, x: torch.Tensor) -> torch.Tensor:
        seen.append(layer)
        return module(x)

    def merge(module: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        seen.append("merge")
        return module(x)

    with torch.no_grad():
        stepped, plain = encoder.taps(images, block, merge), encoder(images)
    assert seen == [0, 1, "merge", 2, 3, "merge", 4, 5, "merge", 6, 7]
    for a, b in zip(stepped, plain, strict=True):
        assert torch.equal(a, b)
    replaced = site.replace_submodule("norm2", lambda norm: torch.nn.Identity())
    assert isinstance(site.block.norm2, torch.nn.Identity) and replaced is site.block.norm2
