"""The embedded swin-nano weights: shipped with the package (fp16), used at once by every run
that asks for ``--weights auto``, named by the README's sha256, and rebuilt from their recipe
only into the user cache. That a rebuild transfers as well as the shipped file is checked in
``test_learnability.py``, beside the other transfer figures."""

from __future__ import annotations

import dataclasses
import functools
import json
import re
from pathlib import Path

import pytest
import torch
from cli_runner import run_cli
from safetensors.torch import load_file

import pebench.pretrain
from pebench.api import run
from pebench.backbones import BACKBONES, SwinEncoder
from pebench.config import RunConfig
from pebench.digest import file_sha256
from pebench.pretrain import PretrainConfig, ensure_embedded_weights, shipped_weights_path
from pebench.weights import load_backbone_weights

README = Path(__file__).resolve().parents[1] / "README.md"
QUICK = functools.partial(PretrainConfig, steps=2, batch_size=2, img_size=64)


def test_runs_use_the_shipped_weights_without_building(tmp_path: Path,
                                                      isolated_cache: Path) -> None:
    shipped = shipped_weights_path(PretrainConfig())
    assert shipped.is_file(), "the current recipe's weights must ship: pebench pretrain --ship"
    record = run(RunConfig(method="decoder-only", steps=1, batch_size=2, img_size=64,
                           out=tmp_path), show_progress=False)
    assert record.weights == {"source": "embedded", "path": str(shipped),
                              "sha256": file_sha256(shipped)}
    assert not (isolated_cache / "pebench" / "weights").exists()  # nothing was built


def test_the_readme_states_the_shipped_sha256() -> None:
    stated = re.search(r"sha256 `([0-9a-f]{64})`", README.read_text())
    assert stated, "the README must state the shipped weights' sha256 as: sha256 `<hex>`"
    assert stated.group(1) == file_sha256(shipped_weights_path(PretrainConfig()))


def test_the_shipped_weights_are_fp16_and_load_into_swin_nano() -> None:
    path = shipped_weights_path(PretrainConfig())
    state = load_file(str(path))
    assert {t.dtype for t in state.values()} == {torch.float16}
    encoder = SwinEncoder(BACKBONES.get("swin-nano"), 96)
    load_backbone_weights(encoder, path)
    for key, value in encoder.backbone_state_dict().items():
        assert value.dtype == torch.float32  # loaded into the fp32 model, not kept in fp16
        torch.testing.assert_close(value, state[key].float(), rtol=0, atol=0)
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["dtype"] == "float16" and len(meta["built_sha256"]) == 64
    assert meta["config"] == dataclasses.asdict(PretrainConfig())  # the current recipe


def test_a_recipe_without_shipped_weights_is_built_first(
        tmp_path: Path, isolated_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pebench.pretrain, "PretrainConfig", QUICK)
    record = run(RunConfig(method="decoder-only", steps=1, batch_size=2, img_size=64,
                           out=tmp_path), show_progress=False)
    (built,) = (isolated_cache / "pebench" / "weights").glob("swin-nano-*.safetensors")
    assert record.weights["source"] == "embedded" and record.weights["path"] == str(built)


def test_shipping_a_build_halves_it_and_takes_precedence_over_the_cache(
        tmp_path: Path, isolated_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pebench.pretrain, "PretrainConfig", QUICK)
    monkeypatch.setattr(pebench.pretrain, "SHIPPED_DIR", tmp_path / "shipped")
    config = QUICK()
    built = pebench.pretrain.pretrain(config, show_progress=False)
    assert ensure_embedded_weights("swin-nano") == built  # nothing shipped yet: the build
    shipped = pebench.pretrain.ship(built, config)
    assert shipped == tmp_path / "shipped" / built.name
    assert ensure_embedded_weights("swin-nano") == shipped
    full, half = load_file(str(built)), load_file(str(shipped))
    assert full.keys() == half.keys()
    for key, value in full.items():
        torch.testing.assert_close(half[key], value.half(), rtol=0, atol=0)
    assert shipped.stat().st_size < 0.55 * built.stat().st_size
    meta = json.loads(shipped.with_suffix(".json").read_text())
    assert meta["built_sha256"] == file_sha256(built)


def test_pretrain_command_builds_into_the_cache_and_ships_on_request(
        tmp_path: Path, isolated_cache: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(pebench.pretrain, "PretrainConfig", QUICK)
    monkeypatch.setattr(pebench.pretrain, "SHIPPED_DIR", tmp_path / "shipped")
    code, out, _ = run_cli(["pretrain", "--quiet"], capsys, monkeypatch)
    built = pebench.pretrain.embedded_weights_path(QUICK())
    assert code == 0 and built.is_file() and f"use it with --weights {built}" in out
    assert not (tmp_path / "shipped").exists()
    code, out, _ = run_cli(["pretrain", "--ship"], capsys, monkeypatch)
    shipped = tmp_path / "shipped" / built.name
    assert code == 0 and f"cached: {built}" in out
    assert f"shipped: {shipped} (sha256 {file_sha256(shipped)})" in out


def test_pretraining_is_deterministic(isolated_cache: Path) -> None:
    config = QUICK()
    first = pebench.pretrain.pretrain(config, show_progress=False).read_bytes()
    second = pebench.pretrain.pretrain(config, show_progress=False).read_bytes()
    assert first == second
    assert str(isolated_cache) in str(pebench.pretrain.embedded_weights_path(config))
