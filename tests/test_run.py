"""End-to-end runs on the embedded dataset: the record, the checkpoint, determinism, failure."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch
from conftest import fail_training_at
from safetensors.torch import load_file

from pebench.api import run
from pebench.config import RunConfig
from pebench.data.synthetic import SyntheticScenes
from pebench.params import count_parameters
from pebench.primary import delta_m
from pebench.reference import finished_run_delta_m
from pebench.results import RunRecord
from pebench.task import get_task
from pebench.train import Trainer

TINY = {"img_size": 64, "batch_size": 2, "steps": 3}
RECORD_FIELDS = {
    "schema", "run_id", "created_at", "status", "error", "method", "method_config", "tasks",
    "dataset", "backbone", "weights", "img_size", "seed", "steps", "metrics", "primary",
    "primary_metric", "params", "timing", "peak_memory_mb", "versions",
    "git_commit", "config",
}


def tiny_run(out: Path, method: str = "mtl-full", **overrides: object) -> dict:
    settings = {**TINY, "weights": "none", **overrides}
    record = run(RunConfig(method=method, out=out, **settings), show_progress=False)
    return json.loads((out / f"{record.run_id}.json").read_text())


def test_completed_record_has_the_documented_schema(tmp_path: Path) -> None:
    record = tiny_run(tmp_path)
    assert set(record) >= RECORD_FIELDS
    assert record["status"] == "completed" and record["error"] is None
    assert record["tasks"] == ["semseg", "human_parts", "saliency", "normals"]
    assert record["steps"] == 3 and record["img_size"] == 64
    assert record["metrics"]["normals"].keys() == {
        "mean", "median", "rmse", "within_11.25", "within_22.5", "within_30"}
    for task, value in record["primary"].items():
        assert value == record["metrics"][task][get_task(task).primary_metric]
    params = record["params"]
    assert params["trainable"] == params["decoders"] + params["encoder_shared"] + \
        params["encoder_task_specific"] + params["other"]
    assert params["trainable"] == params["total"]  # mtl-full trains everything
    assert record["timing"]["train_s"] > 0 and record["timing"]["train_steps_per_s"] > 0
    assert record["weights"] == {"source": "none", "path": None, "sha256": None}
    assert record["versions"]["torch"] == torch.__version__

    checkpoint = load_file(str(tmp_path / record["checkpoint"]))
    trainable = sum(v.numel() for k, v in checkpoint.items() if "running_" not in k
                    and not k.endswith("num_batches_tracked"))
    assert trainable == params["trainable"]
    assert not list(tmp_path.glob("*.tmp")), "no temporary file may be left behind"


def test_the_record_says_how_long_training_waited_for_data(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """``timing.data_s`` is the part of ``train_s`` spent waiting for batches: a training
    sample made 50 ms slower adds to it, a step made 100 ms slower does not."""
    render, step = SyntheticScenes.__getitem__, Trainer.train_step

    def slow_sample(self: SyntheticScenes, item: object) -> object:
        if self.split == "train":
            time.sleep(0.05)
        return render(self, item)

    def slow_step(self: Trainer, batch: object) -> object:
        time.sleep(0.1)
        return step(self, batch)

    monkeypatch.setattr(SyntheticScenes, "__getitem__", slow_sample)
    monkeypatch.setattr(Trainer, "train_step", slow_step)
    timing = tiny_run(tmp_path)["timing"]
    steps, batch = TINY["steps"], TINY["batch_size"]
    assert timing["data_s"] >= steps * batch * 0.05, timing
    assert timing["train_s"] - timing["data_s"] >= steps * 0.1, timing


def test_decoder_only_checkpoint_holds_only_trainable_tensors(tmp_path: Path) -> None:
    record = tiny_run(tmp_path, method="decoder-only")
    checkpoint = load_file(str(tmp_path / record["checkpoint"]))
    assert all(k.startswith("decoders.") for k in checkpoint)
    assert record["params"]["encoder_shared"] == 0


def test_same_seed_gives_identical_metrics(tmp_path: Path) -> None:
    first = tiny_run(tmp_path / "a", seed=3)
    second = tiny_run(tmp_path / "b", seed=3)
    other = tiny_run(tmp_path / "c", seed=4)
    assert first["metrics"] == second["metrics"]
    assert first["metrics"] != other["metrics"]


def test_steps_zero_evaluates_the_untrained_model(tmp_path: Path) -> None:
    record = tiny_run(tmp_path, steps=0)
    assert record["status"] == "completed" and record["steps"] == 0
    assert record["timing"]["train_steps_per_s"] == 0.0


def test_failure_after_start_is_recorded_as_failed(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    fail_training_at(monkeypatch, 1)
    with pytest.raises(RuntimeError, match="simulated"):
        tiny_run(tmp_path)
    (path,) = tmp_path.glob("*.json")
    record = json.loads(path.read_text())
    assert record["status"] == "failed"
    assert "RuntimeError: simulated out-of-memory" in record["error"]
    assert record["metrics"] == {} and record["primary"] == {}
    assert not list(tmp_path.glob("*.safetensors"))


def test_delta_m_against_single_task_runs_of_the_same_setting(tmp_path: Path) -> None:
    reference = tiny_run(tmp_path, method="single-task", steps=1)
    record = tiny_run(tmp_path, method="decoder-only", steps=1)
    # The record holds its own run's facts: its primary metrics and how to read them.
    assert "delta_m" not in record
    assert record["primary_metric"] == {
        t: {"name": get_task(t).primary_metric, "higher_is_better": get_task(t).higher_is_better}
        for t in record["tasks"]}
    higher = {t: get_task(t).higher_is_better for t in record["tasks"]}
    expected = delta_m(record["primary"], reference["primary"], higher)
    shown = finished_run_delta_m(RunRecord.from_dict(record), tmp_path)
    assert shown is not None and shown.value == pytest.approx(expected)
    assert shown.reference.run_ids == (reference["run_id"],)
    different_budget = tiny_run(tmp_path, method="decoder-only", steps=2)
    assert finished_run_delta_m(RunRecord.from_dict(different_budget), tmp_path) is None


def test_parameter_counts_in_the_record_match_the_model(tmp_path: Path) -> None:
    from pebench.backbones import BACKBONES, SwinEncoder
    from pebench.method import METHODS
    from pebench.model import MultiTaskModel

    record = tiny_run(tmp_path, method="single-task", steps=1)
    tasks = tuple(record["tasks"])
    encoder = SwinEncoder(BACKBONES.get("swin-nano"), 64)
    method = METHODS.get("single-task")(METHODS.get("single-task").Config(), tasks)
    model = MultiTaskModel(encoder, method, {"semseg": 7, "human_parts": 7, "saliency": 1,
                                             "normals": 3})
    assert record["params"] == count_parameters(model).as_dict()


def test_a_metric_without_valid_pixels_is_written_as_null(tmp_path: Path) -> None:
    from pebench.results import RunRecord

    record = RunRecord(run_id="r", created_at="t", method="m", method_config={}, tasks=["depth"],
                       dataset="d", backbone="b", img_size=1, seed=0, steps=0, config={},
                       metrics={"depth": {"rmse": float("nan")}}, primary={"depth": float("nan")})
    written = json.loads(record.write(tmp_path).read_text())
    assert written["metrics"]["depth"]["rmse"] is None and written["primary"]["depth"] is None
    assert next(iter(written)) == "schema"
