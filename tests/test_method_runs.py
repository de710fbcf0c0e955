"""The newest methods run end to end through ``pebench run``: two steps and an evaluation on
the embedded data and on a PASCAL-Context fixture in the real on-disk format (labels at their
own sizes), recorded as completed with every task's metric."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from cli_runner import run_cli

from pebench.data.fixtures import write_fixture

# Every other method's run is covered elsewhere (test_run, test_sweep, the learnability
# table); these have no published-row or sweep test yet.
METHODS = ("tadformer", "ditask")
# Encoder parameters owned by one task on swin-nano with the four tasks: TADFormer's prompts
# (one of 32 channels per task); DiTASK's task warps (3 per task on proj, fc1, fc2 of four
# stage ends).
TASK_SPECIFIC = {"tadformer": 4 * 32, "ditask": 4 * 3 * 4 * 3}


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("dataset", ["synthetic", "pascal-context"])
def test_runs_end_to_end(method: str, dataset: str, tmp_path: Path,
                         capsys: pytest.CaptureFixture[str],
                         monkeypatch: pytest.MonkeyPatch) -> None:
    argv = ["run", "--method", method, "--dataset", dataset, "--img-size", "64",
            "--steps", "2", "--batch-size", "2", "--quiet", "--out", str(tmp_path / "runs")]
    if dataset != "synthetic":
        fixture = write_fixture(dataset, tmp_path / "data")
        argv += ["--data-root", str(fixture.root), "--weights", "none",
                 "--eval-resolution", "original"]
    code, _, err = run_cli(argv, capsys, monkeypatch)
    assert code == 0, err
    (path,) = (tmp_path / "runs").glob("*.json")
    record = json.loads(path.read_text())
    assert record["status"] == "completed" and record["steps_done"] == 2
    assert set(record["primary"]) == {"semseg", "human_parts", "saliency", "normals"}
    assert all(math.isfinite(value) for value in record["primary"].values())
    assert record["params"]["encoder_task_specific"] == TASK_SPECIFIC[method]
