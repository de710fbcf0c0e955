"""Data-parallel runs under torchrun: two real gloo processes on the CPU against one."""

from __future__ import annotations

import math
import signal
import subprocess
import sys
from pathlib import Path

import torch

from pebench.api import run
from pebench.config import RunConfig
from pebench.data.stream import BatchIndexStream
from pebench.distributed import Ranks
from tests.processes import SMALL_RUN, only_record, pebench_command, states, wait_for

STEPS = 40
# Three tasks whose meters sum counts (semseg), per-image float64 sums (saliency) and
# pixel sums with a histogram (normals); a fourth decoder would only add time.
TASKS = ["--tasks", "semseg,saliency,normals"]
# Training in two processes normalises each decoder BatchNorm over a rank's half of the
# batch (gloo on a CPU has no SyncBatchNorm), so it is the same run only to a tolerance:
# measured after 40 steps with the four default tasks, 0.26 / 0.82 points and 0.01° apart.
TOLERANCE = {"semseg": 1.5, "saliency": 2.5, "normals": 0.5}


def torchrun(*args: str) -> list[str]:
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                "--nproc_per_node", "2"]
    return launcher + pebench_command(*args)[1:]


def finish(command: list[str]) -> None:
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


def test_ranks_share_every_global_batch_between_them() -> None:
    alone = BatchIndexStream(100, 8, seed=3, start_batch=5)
    shares = [BatchIndexStream(100, 8, seed=3, start_batch=5, ranks=Ranks(rank, 2))
              for rank in (0, 1)]
    for k in range(5, 20):  # across an epoch boundary (batch 12 holds positions 96-103)
        assert shares[0].batch(k) + shares[1].batch(k) == alone.batch(k)


def test_two_processes_evaluate_the_same_weights_as_one(tmp_path: Path) -> None:
    # 0 steps: both evaluate the seed's initial model. One image per batch and one thread
    # per process (torchrun's default), so every image meets the very same kernels in both.
    finish(torchrun("run", *SMALL_RUN, *TASKS, "--steps", "0", "--eval-batch-size", "1",
                    "--device", "cpu", "--out", str(tmp_path / "two")))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        one = run(RunConfig(method="lora", tasks=("semseg", "saliency", "normals"),
                            img_size=64, batch_size=2, eval_batch_size=1, steps=0,
                            weights="none", device="cpu", out=tmp_path / "one"),
                  show_progress=False)
    finally:
        torch.set_num_threads(threads)
    two = only_record(tmp_path / "two")
    assert two["runtime"]["processes"] == 2 and one.runtime["processes"] == 1
    for task, metrics in one.metrics.items():
        for name, value in metrics.items():
            # Summed counts: exact. Float64 sums added in another order: within 1e-12.
            assert math.isclose(two["metrics"][task][name], value, rel_tol=1e-12), (task, name)
    assert two["metrics"]["semseg"] == one.metrics["semseg"]  # a confusion matrix of counts


def test_torchrun_run_resumes_exactly_and_matches_one_process(tmp_path: Path) -> None:
    args = ["run", *SMALL_RUN, *TASKS, "--steps", str(STEPS), "--batch-size", "4",
            "--device", "cpu"]
    interrupted = tmp_path / "interrupted"
    # The uninterrupted two-process run goes on beside the one that is stopped.
    straight = subprocess.Popen(torchrun(*args, "--out", str(tmp_path / "straight")),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    process = subprocess.Popen(torchrun(*args, "--checkpoint-every", "2", "--out",
                                        str(interrupted)),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: bool(states(interrupted)), "the first saved state", process=process)
    process.send_signal(signal.SIGTERM)  # torchrun passes it on to both ranks
    process.communicate(timeout=120)
    record = only_record(interrupted)
    assert record["status"] == "interrupted", record["error"]
    assert 2 <= record["steps_done"] < STEPS
    assert record["resume_command"].startswith("torchrun --nproc_per_node 2 -m pebench run")
    finish(torchrun("run", "--resume", record["run_id"], "--out", str(interrupted), "--quiet"))
    _, err = straight.communicate(timeout=300)
    assert straight.returncode == 0, err[-3000:]

    resumed, uninterrupted = only_record(interrupted), only_record(tmp_path / "straight")
    assert resumed["status"] == "completed"
    assert resumed["resumes"][0]["processes"] == 2
    assert resumed["metrics"] == uninterrupted["metrics"]  # every rank's generators restored
    assert sorted(p.suffix for p in interrupted.iterdir()) == [".json", ".safetensors"]

    alone = run(RunConfig(method="lora", tasks=("semseg", "saliency", "normals"), img_size=64,
                          batch_size=4, eval_batch_size=64, steps=STEPS, weights="none",
                          device="cpu", out=tmp_path / "one"),
                show_progress=False)
    for task, tolerance in TOLERANCE.items():
        assert abs(uninterrupted["primary"][task] - alone.primary[task]) < tolerance, (
            task, uninterrupted["primary"], alone.primary)
