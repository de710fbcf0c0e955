"""Mixed precision on the CPU: bf16 autocast trains, fp16 trains with a gradient scaler whose
state a resume keeps, and a precision is part of a run's setting."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils.data import default_collate

from pebench.config import RunConfig, method_config
from pebench.data.base import DATASETS
from pebench.data.synthetic import SyntheticScenes
from pebench.model import build_model
from pebench.results import read_record
from pebench.task import get_task
from pebench.train import OptimConfig, Trainer
from tests.cli_runner import run_cli
from tests.conftest import interrupted_at_start

TASKS = ("saliency", "normals")
OPTIM = OptimConfig(lr=1e-3, weight_decay=0.05, warmup_fraction=0.0, clip_grad_norm=5.0)


def trainer(precision: str, weights: Path | None, steps: int) -> Trainer:
    torch.manual_seed(0)
    model = build_model("lora", method_config("lora", {}), "swin-nano", 64, TASKS,
                        DATASETS.get("synthetic").info, weights)
    return Trainer(model, {t: get_task(t) for t in TASKS}, steps, OPTIM,
                   torch.device("cpu"), precision)


def batches(count: int, size: int = 4) -> list[dict[str, torch.Tensor]]:
    scenes = SyntheticScenes("train", 64, TASKS)
    return [default_collate([scenes[i * size + j] for j in range(size)]) for i in range(count)]


def test_bf16_training_learns_and_keeps_float32_state(nano_weights: Path) -> None:
    steps = 24
    bf16 = trainer("bf16", nano_weights, steps)
    data = batches(steps)
    losses = [bf16.train_step(batch)["total"] for batch in data]
    # The same batches again at the end: the trained model fits them far better.
    refit = sum(bf16.forward_losses(b)[1].item() for b in data[:4]) / 4
    assert refit < 0.6 * sum(losses[:4]) / 4, (losses[:4], refit)
    assert all(p.dtype == torch.float32 for p in bf16.model.parameters())
    assert not bf16.scaler.is_enabled()
    # What a bf16 forward computes stays near the fp32 one (8 mantissa bits: ~1 % apart).
    fp32 = trainer("fp32", nano_weights, steps)
    fp32.model.load_state_dict(bf16.model.state_dict())
    half_loss, full_loss = bf16.forward_losses(data[0])[0], fp32.forward_losses(data[0])[0]
    for task in TASKS:
        assert half_loss[task].dtype == torch.float32
        assert half_loss[task].item() == pytest.approx(full_loss[task].item(), rel=0.05)


def test_fp16_scales_gradients_and_its_scale_is_resumed() -> None:
    fp16 = trainer("fp16", None, 10)
    for batch in batches(2):
        fp16.train_step(batch)
    assert fp16.scaler.is_enabled() and fp16.scaler.get_scale() > 1
    state = fp16.state_dict()
    again = trainer("fp16", None, 10)
    again.load_state_dict(state)
    assert again.step == 2 and again.scaler.get_scale() == fp16.scaler.get_scale()


def test_precision_is_recorded_and_refused_in_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    run_id = interrupted_at_start(RunConfig(method="lora", precision="bf16", weights="none",
                                            out=tmp_path / "bf16"))
    record = read_record(tmp_path / "bf16" / f"{run_id}.json")
    assert record.config["precision"] == "bf16" and record.runtime["processes"] == 1
    code, _, err = run_cli(["run", "--method", "lora", "--precision", "fp8",
                            "--out", str(tmp_path / "fp8")], capsys, monkeypatch)
    assert code == 2 and err.strip() == ("error: unknown --precision 'fp8'; valid: fp32, "
                                         "bf16, fp16.")
    assert not (tmp_path / "fp8").exists()
