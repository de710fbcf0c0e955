"""``pebench bench``: the step table against the floors, the input-pipeline mode, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pebench.data.fixtures import write_fixture
from tests.cli_runner import run_cli

QUICK = ["--img-size", "32", "--batch-size", "2", "--repeats", "1", "--warmup", "0",
         "--device", "cpu", "--format", "json"]

def bench_json(argv: list[str], capsys: pytest.CaptureFixture[str],
               monkeypatch: pytest.MonkeyPatch) -> dict:
    code, out, err = run_cli(["bench", *argv], capsys, monkeypatch)
    assert code == 0, err
    return json.loads(out)

def test_rows_floors_and_targets(capsys: pytest.CaptureFixture[str],
                                 monkeypatch: pytest.MonkeyPatch) -> None:

    result = bench_json(["--methods", "vl-adapter,polyhistor-lite,mtl-full", *QUICK],
                        capsys, monkeypatch)
    rows = {row["label"]: row for row in result["rows"]}
    assert list(rows) == ["backprop floor", "vl-adapter", "polyhistor-lite", "mtl-full"]
    assert rows["mtl-full"]["vs_full"] == pytest.approx(1.0)
    floor = rows["backprop floor"]
    assert floor["vs_backprop_floor"] == pytest.approx(1.0) and floor["trainable"] > 0
    lite, shared = rows["polyhistor-lite"], rows["vl-adapter"]
    assert 0 < lite["prepare_share"] < 1  # a hypernetwork
    assert lite["execution"] == "batched" and lite["batched_ms"] == lite["step_ms"]
    assert lite["loop_ms"] > 0 and lite["loop_over_batched"] == lite["loop_ms"] / lite["step_ms"]
    assert shared["prepare_share"] is None and shared["loop_ms"] is None and shared["task_shared"]
    assert not lite["task_shared"]
    for row in rows.values():
        assert row["step_ms"] > 0 and row["eval_images_per_s"] > 0
        assert row["samples_per_s"] == pytest.approx(2 / row["step_ms"] * 1e3)
    # Training inside the encoder keeps more activations than the frozen floor does.
    assert lite["saved_mb"] > floor["saved_mb"] and rows["mtl-full"]["saved_mb"] > floor["saved_mb"]
    assert len(result["targets"]) == 6
    assert result["setting"]["img_size"] == 32 and result["setting"]["device"] == "cpu"

def test_the_backprop_floor_leaves_the_shared_batch_alone() -> None:
    from pebench.bench import BenchSetting, Variant, bench_batch, measure

    setting = BenchSetting(img_size=32, batch_size=2, warmup=0, repeats=1)
    batch = bench_batch(setting)
    measure(Variant("floor", "decoder-only"), setting, batch, backprop=True)
    assert not batch["image"].requires_grad  # the methods measured next see no image grad


def test_data_mode_times_the_real_loader_with_workers(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    fixture = write_fixture("pascal-context", tmp_path / "pc")
    result = bench_json(["--data", "--dataset", "pascal-context", "--data-root",
                         str(fixture.root), "--img-size", "64", "--batch-size", "2",
                         "--workers", "0,1", "--batches", "2", "--format", "json"],
                        capsys, monkeypatch)
    assert [row["workers"] for row in result["rows"]] == [0, 1]
    assert all(row["images_per_s"] > 0 and row["batches"] == 2 for row in result["rows"])

@pytest.mark.parametrize(("argv", "message"), [
    (["--methods", "nope"], "unknown method 'nope'"),
    (["--precision", "fp8"], "unknown --precision 'fp8'"),
    (["--repeats", "0"], "--repeats must be ≥ 1, got 0."),
    (["--data", "--workers", "two"], "--workers 'two' must list worker counts"),
    (["--img-size", "30"], "--img-size 30 is not valid for swin-nano"),
])
def test_bad_input_is_one_line(argv: list[str], message: str,
                               capsys: pytest.CaptureFixture[str],
                               monkeypatch: pytest.MonkeyPatch) -> None:
    code, _, err = run_cli(["bench", *argv], capsys, monkeypatch)
    assert code == 2 and message in err and err.count("\n") == 1, err
