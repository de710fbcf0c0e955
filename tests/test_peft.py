"""The ``peft`` method (any PEFT tuner on the timm encoder, shared or per task) and the
cross-check of pebench's own ``lora`` against PEFT's LoraConfig on the same timm modules."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
import torch
from method_testing import NANO, PASCAL, build, train_step, trainable
from peft import LoraConfig, inject_adapter_in_model
from peft.tuners.lora import LoraLayer
from peft.tuners.tuners_utils import BaseTunerLayer
from tolerances import float32_atol, swin_nano_roundings

from methods.lora_layers import LoRALinear
from pebench.backbones import BACKBONES, SwinEncoder
from pebench.errors import PebenchError
from pebench.model import MultiTaskModel
from pebench.params import count_parameters

ALL_LINEARS = ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2")
QKV_NAMES = {f"layers.{s}.blocks.{i}.attn.qkv" for s in range(4) for i in range(2)}


def write_config(tmp_path: Path, **fields: object) -> str:
    path = tmp_path / "adapter_config.json"
    path.write_text(json.dumps(fields))
    return str(path)


def frozen_encoder(dtype: torch.dtype = torch.float32) -> SwinEncoder:
    """The backbone ``build`` starts from: same seed, same construction order."""
    torch.manual_seed(0)
    return SwinEncoder(BACKBONES.get("swin-nano"), 64).to(dtype)


def peft_layers(model: torch.nn.Module) -> dict[str, BaseTunerLayer]:
    return {n: m for n, m in model.named_modules() if isinstance(m, BaseTunerLayer)}


# ---- pebench's lora against PEFT's LoraConfig -----------------------------------------------

def block_regex(targets: tuple[str, ...]) -> str:
    """Exactly the blocks' Linears named in ``targets`` (``proj`` alone would also hit the
    patch-embedding convolution)."""
    return r"layers\.\d+\.blocks\.\d+\.(" + "|".join(map(re.escape, targets)) + ")"


def peft_twin(targets: tuple[str, ...], dtype: torch.dtype) -> SwinEncoder:
    """A separate encoder with the same frozen weights and PEFT's LoRA (r 4, alpha 8)."""
    reference = frozen_encoder(dtype)
    inject_adapter_in_model(LoraConfig(r=4, lora_alpha=8, target_modules=block_regex(targets)),
                            reference.model)
    return reference.to(dtype)


def copy_lora(model: MultiTaskModel, reference: SwinEncoder, index: int) -> None:
    """pebench's weight set ``index`` into PEFT's adapter: A (S, in, r) → lora_A (r, in),
    B (S, r, out) → lora_B (out, r)."""
    ours = {n: m for n, m in model.encoder.model.named_modules() if isinstance(m, LoRALinear)}
    theirs = {n: m for n, m in reference.model.named_modules() if isinstance(m, LoraLayer)}
    assert ours.keys() == theirs.keys()
    with torch.no_grad():
        for name, layer in ours.items():
            theirs[name].lora_A["default"].weight.copy_(layer.update.lora_a[index].T)
            theirs[name].lora_B["default"].weight.copy_(layer.update.lora_b[index].T)


@pytest.mark.parametrize("targets", [("attn.qkv",), ALL_LINEARS])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_shared_lora_equals_peft_lora(targets: tuple[str, ...], dtype: torch.dtype) -> None:
    model = build("lora", shared="true", rank="4", alpha="8", targets=",".join(targets))
    model = model.to(dtype).eval()
    reference = peft_twin(targets, dtype).eval()
    theirs = {n: m for n, m in reference.model.named_modules() if isinstance(m, LoraLayer)}
    ours = [m for m in model.encoder.modules() if isinstance(m, LoRALinear)]
    assert len(theirs) == len(ours) == 8 * len(targets)
    # Same count, same zero B at initialisation, same scaling alpha / r.
    peft_trainable = sum(p.numel() for p in reference.parameters() if p.requires_grad)
    assert count_parameters(model).encoder_shared == peft_trainable > 0
    assert all(m.lora_B["default"].weight.abs().sum() == 0 for m in theirs.values())
    assert all(m.update.lora_b.abs().sum() == 0 for m in ours)
    scales = {m.update.scale for m in ours}
    assert {m.scaling["default"] for m in theirs.values()} == scales == {2.0}
    with torch.no_grad():
        for layer in ours:
            layer.update.lora_b.normal_(0, 0.5)  # not the identity any more
    copy_lora(model, reference, 0)
    images = torch.randn(2, 3, 64, 64, dtype=dtype)
    with torch.no_grad():
        frozen = frozen_encoder(dtype)(images)
        for mine, peft_tap, plain in zip(model.encoder(images), reference(images), frozen,
                                         strict=True):
            # float64: equal up to rounding on any CPU. float32: up to the rounding bound of
            # two kernels' summation orders (≈ 1e-3 here, against LoRA effects of 0.1 to 7).
            tolerance = 1e-12 if dtype == torch.float64 else \
                float32_atol(peft_tap, swin_nano_roundings())
            torch.testing.assert_close(mine, peft_tap, rtol=0, atol=tolerance)
            assert (mine - plain).abs().max() > 100 * tolerance


def test_per_task_lora_equals_peft_lora_with_that_tasks_weights() -> None:
    model = build("lora", rank="4", alpha="8").double().eval()
    reference = peft_twin(("attn.qkv",), torch.float64).eval()
    with torch.no_grad():
        for layer in (m for m in model.encoder.modules() if isinstance(m, LoRALinear)):
            layer.update.lora_b.normal_(0, 0.5)
        images = torch.randn(2, 3, 64, 64, dtype=torch.float64)
        features = model.method.encode(model.encoder, images)
        for index, task in enumerate(NANO):
            copy_lora(model, reference, index)
            for mine, theirs in zip(features[task], reference(images), strict=True):
                torch.testing.assert_close(mine, theirs, rtol=1e-12, atol=1e-12)


def test_peft_method_per_task_equals_pebench_lora_outputs_and_gradients(tmp_path: Path) -> None:
    """The per-task loop switches PEFT adapters; every task's adapter keeps training."""
    ours = build("lora", rank="4", alpha="8").double()
    config = write_config(tmp_path, peft_type="LORA", r=4, lora_alpha=8, target_modules=["qkv"])
    theirs = build("peft", config=config, per_task="true").double()
    layers = {n: m for n, m in theirs.encoder.model.named_modules() if isinstance(m, LoraLayer)}
    with torch.no_grad():
        for name, layer in ((n, m) for n, m in ours.encoder.model.named_modules()
                            if isinstance(m, LoRALinear)):
            layer.update.lora_b.normal_(0, 0.5)
            for index, task in enumerate(NANO):
                layers[name].lora_A[task].weight.copy_(layer.update.lora_a[index].T)
                layers[name].lora_B[task].weight.copy_(layer.update.lora_b[index].T)
    images = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    weights = {task: torch.randn(4) for task in NANO}
    for model in (ours, theirs):
        features = model.method.encode(model.encoder, images)
        sum((w * tap.mean()) for task in NANO
            for w, tap in zip(weights[task], features[task], strict=True)).backward()
    for name, layer in ((n, m) for n, m in ours.encoder.model.named_modules()
                        if isinstance(m, LoRALinear)):
        for index, task in enumerate(NANO):
            torch.testing.assert_close(layers[name].lora_B[task].weight.grad,
                                       layer.update.lora_b.grad[index].T, rtol=1e-9, atol=1e-12)
            torch.testing.assert_close(layers[name].lora_A[task].weight.grad,
                                       layer.update.lora_a.grad[index].T, rtol=1e-9, atol=1e-12)


# ---- the peft method ------------------------------------------------------------------------

def test_default_is_shared_lora_r4_on_every_qkv_and_counts_like_pebench_lora() -> None:
    model = build("peft")
    assert set(peft_layers(model.encoder.model)) == QKV_NAMES
    counts = count_parameters(build("peft", PASCAL, "swin-t", 448, meta=True))
    lora = count_parameters(build("lora", PASCAL, "swin-t", 448, meta=True, shared="true"))
    assert counts.encoder_shared == lora.encoder_shared == 70_656
    assert counts.trainable == lora.trainable and counts.encoder_task_specific == 0


def test_per_task_holds_one_adapter_per_task(tmp_path: Path) -> None:
    for fields in ({}, {"config": write_config(tmp_path, peft_type="IA3",
                                               target_modules=["qkv", "fc2"],
                                               feedforward_modules=["fc2"])}):
        shared = count_parameters(build("peft", PASCAL, "swin-t", 448, meta=True, **fields))
        per_task = count_parameters(build("peft", PASCAL, "swin-t", 448, meta=True,
                                          per_task="true", **fields))
        assert per_task.encoder_task_specific == len(PASCAL) * shared.encoder_shared > 0
        assert per_task.encoder_shared == 0 and shared.encoder_task_specific == 0


def test_a_bare_proj_target_also_hits_the_patch_embedding(tmp_path: Path) -> None:
    bare = build("peft", config=write_config(tmp_path, peft_type="LORA",
                                             target_modules=["proj"]))
    names = set(peft_layers(bare.encoder.model))
    assert "patch_embed.proj" in names and len(names) == 1 + 8
    dotted = build("peft", config=write_config(tmp_path, peft_type="LORA",
                                               target_modules=["attn.proj"]))
    assert set(peft_layers(dotted.encoder.model)) == names - {"patch_embed.proj"}


def test_only_adapters_train_and_the_backbone_stays_bit_identical() -> None:
    model = build("peft", per_task="true")
    before = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    adapter_keys = {k for k in before if ".lora_" in k}
    assert {n for n, p in model.encoder.named_parameters() if p.requires_grad} == adapter_keys
    assert len(adapter_keys) == 8 * 2 * len(NANO)
    optimizer = torch.optim.AdamW(trainable(model), lr=1e-2)
    for _ in range(2):
        train_step(model, torch.randn(2, 3, 64, 64), optimizer)
    after = model.encoder.state_dict()
    for key, value in before.items():
        assert torch.equal(value, after[key]) == (key not in adapter_keys), key
    # The adapters moved apart: each task's encoder now computes different features.
    model.eval()
    with torch.no_grad():
        features = model.method.encode(model.encoder, torch.randn(2, 3, 64, 64))
    for task in list(NANO)[1:]:
        assert (features[task][0] - features["semseg"][0]).abs().max() > 1e-4


@pytest.mark.parametrize("fields", [
    {"peft_type": "LORA", "r": 4, "lora_alpha": 4, "target_modules": ["qkv"], "use_dora": True},
    {"peft_type": "IA3", "target_modules": ["qkv", "fc2"], "feedforward_modules": ["fc2"]},
    {"peft_type": "VERA", "r": 4, "target_modules": ["qkv"]},
    {"peft_type": "BOFT", "boft_block_size": 4, "target_modules": ["qkv"]},
    {"peft_type": "LOHA", "r": 4, "alpha": 4, "target_modules": ["fc1", "fc2"]},
], ids=["dora", "ia3", "vera", "boft", "loha"])
@pytest.mark.parametrize("per_task", ["false", "true"])
def test_tuners_run_forward_and_backward(tmp_path: Path, fields: dict, per_task: str) -> None:
    model = build("peft", config=write_config(tmp_path, **fields), per_task=per_task)
    params = trainable(model.encoder)
    layers = tuple(f"{name}." for name in peft_layers(model.encoder.model))
    names = [n for n, p in model.encoder.model.named_parameters() if p.requires_grad]
    assert names and all(n.startswith(layers) for n in names)
    model.prepare()
    out = model(torch.randn(2, 3, 64, 64))
    sum(o.square().mean() for o in out.values()).backward()
    assert all(p.grad is not None for p in params)
    groups = count_parameters(model)
    owned = groups.encoder_task_specific if per_task == "true" else groups.encoder_shared
    assert owned == sum(p.numel() for p in params)


def test_a_saved_adapter_config_is_read_and_made_trainable(tmp_path: Path) -> None:
    LoraConfig(r=2, lora_alpha=2, target_modules=["fc1"], inference_mode=True).save_pretrained(
        str(tmp_path))
    model = build("peft", config=str(tmp_path))
    assert count_parameters(model).encoder_shared == sum(
        2 * (d + 4 * d) * 2 for d in (32, 64, 128, 256))


def test_clean_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(PebenchError, match="cannot be read"):
        build("peft", config=str(tmp_path / "missing.json"))
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(PebenchError, match="is not JSON"):
        build("peft", config=str(tmp_path / "bad.json"))
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(PebenchError, match='needs a "peft_type"'):
        build("peft", config=str(tmp_path / "list.json"))
    with pytest.raises(PebenchError, match=r"unknown peft_type 'LORAX'; valid: .*LORA"):
        build("peft", config=write_config(tmp_path, peft_type="LORAX"))
    with pytest.raises(PebenchError, match=r"does not fit the swin-nano encoder: Target "
                                           r"modules \{'nothing'\} not found.*module names"):
        build("peft", config=write_config(tmp_path, peft_type="LORA",
                                          target_modules=["nothing"]))
    with pytest.raises(PebenchError, match="per-task loop only"):
        build("peft", per_task="true", execution="batched")
    monkeypatch.setitem(sys.modules, "peft", None)
    with pytest.raises(PebenchError) as missing:
        build("peft")
    assert str(missing.value) == "the 'peft' method needs the peft package: pip install peft"
