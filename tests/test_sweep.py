"""Sweeps: grid expansion, the plan against existing records, a real local sweep killed and
re-run, and the SLURM path through submitit's local executor with a real requeue."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import pytest
from cli_runner import run_cli
from conftest import interrupted_at_start
from processes import finish, records, start, states, wait_for

from pebench.api import run
from pebench.config import RunConfig
from pebench.errors import PebenchError
from pebench.sweep import expand, parse_set_axes

SMALL = ["--img-size", "64", "--batch-size", "2", "--eval-batch-size", "64", "--weights",
         "none"]
GRID = ["sweep", "--methods", "decoder-only,lora", "--seeds", "0,1", "--steps", "40",
        "--checkpoint-every", "5", *SMALL]
# Two settings at once: decoder-only finishes first (its encoder is frozen), lora is caught
# mid-training.
KILLED_GRID = [*GRID[:4], "0", *GRID[5:], "--jobs", "2"]


def small(method: str, seed: int, out: Path, **settings: object) -> RunConfig:
    values: dict = {"img_size": 64, "batch_size": 2, "eval_batch_size": 64, "weights": "none",
                    "steps": 40, "checkpoint_every": 5, **settings}
    return RunConfig(method=method, seed=seed, out=out.resolve(), **values)


def test_set_axes_expand_per_method_and_tuples_stay_whole() -> None:
    axes = parse_set_axes(["lora.rank=4,8", "lora.targets=attn.qkv,mlp.fc1",
                           "lora.targets=attn.qkv"])
    assert axes == {"lora": {"rank": ["4", "8"], "targets": ["attn.qkv,mlp.fc1", "attn.qkv"]}}
    configs = expand(RunConfig(method="lora", weights="none"), ["decoder-only", "lora"], [0, 1],
                     axes)
    assert len(configs) == 2 + 2 * 2 * 2
    lora = [(c.method_overrides["rank"], c.method_overrides["targets"], c.seed)
            for c in configs if c.method == "lora"]
    assert len(set(lora)) == 8 and ("8", "attn.qkv,mlp.fc1", 1) in lora
    assert all(c.tasks == ("semseg", "human_parts", "saliency", "normals") for c in configs)


@pytest.mark.parametrize(("argv", "message"), [
    (["--set", "rank=4"], "not of the form method.key=v1,v2"),
    (["--set", "lora.nope=4"], "method 'lora' has no hyperparameter 'nope'"),
    (["--set", "bitfit.shared=true"], "--set names bitfit, which is not among the swept"),
    (["--set", "lora.rank=x"], "--set rank=x for 'lora'"),
    (["--seeds", "0,a"], "--seeds '0,a' must be comma-separated integers"),
    (["--seeds", "0,0"], "a method or a seed is listed twice"),
    (["--jobs", "0"], "--jobs must be ≥ 1"),
    (["--lr", "inf"], "--lr must be a finite positive number"),
])
def test_a_bad_grid_is_refused_before_any_run(argv: list[str], message: str, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    code, _, err = run_cli(["sweep", "--methods", "lora", "--out", str(tmp_path / "runs"),
                            *argv], capsys, monkeypatch)
    assert code == 2
    (line,) = err.strip().splitlines()
    assert line.startswith("error: ") and message in line, line
    assert not (tmp_path / "runs").exists()


def test_the_dry_run_plans_against_existing_records(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "runs"
    done = run(small("decoder-only", 0, out, steps=40), show_progress=False)
    interrupted = interrupted_at_start(small("lora", 1, out))
    other = run(small("decoder-only", 1, out, steps=3), show_progress=False)  # not in the grid
    before = sorted(p.name for p in out.iterdir())
    code, printed, _ = run_cli([*GRID, "--out", str(out), "--dry-run"], capsys, monkeypatch)
    assert code == 0
    lines = printed.strip().splitlines()
    assert lines[0] == f"sweep into {out}: 4 run(s): 1 skipped (completed), 1 resumed, 2 started"
    assert lines[1:] == [f"  skip     decoder-only seed 0 ({done.run_id})",
                         "  new      decoder-only seed 1",
                         "  new      lora seed 0",
                         f"  resume   lora seed 1 ({interrupted})"]
    assert sorted(p.name for p in out.iterdir()) == before, "a dry run writes nothing"
    assert other.run_id not in printed


def test_a_killed_local_sweep_finishes_when_run_again(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "runs"
    sweep = start([*KILLED_GRID, "--out", str(out)], start_new_session=True)

    def one_done_one_training() -> bool:
        found = records(out) if out.is_dir() else []
        return any(r["status"] == "completed" for r in found) and \
            any("-lora-" in p.name for p in states(out))

    wait_for(one_done_one_training, "a completed run and a lora run's saved state",
             timeout=300, process=sweep)
    sweep.send_signal(signal.SIGTERM)
    _, err = sweep.communicate(timeout=120)
    assert sweep.returncode == 143, err
    assert "run the same command again to resume them" in err
    statuses = {r["method"]: r["status"] for r in records(out)}
    assert statuses == {"decoder-only": "completed", "lora": "interrupted"}, statuses

    code, planned, _ = run_cli([*KILLED_GRID, "--out", str(out), "--dry-run"], capsys,
                               monkeypatch)
    assert code == 0
    assert planned.splitlines()[0] == \
        f"sweep into {out}: 2 run(s): 1 skipped (completed), 1 resumed", planned
    again = finish([*KILLED_GRID, "--out", str(out)])
    assert again.returncode == 0, again.stderr + again.stdout
    assert "  lora seed 0: completed" in again.stdout
    assert f"sweep: 2 of 2 setting(s) completed in {out}" in again.stdout
    final = records(out)
    assert len(final) == 2 and all(r["status"] == "completed" for r in final)
    assert [bool(r["resumes"]) for r in final if r["method"] == "lora"] == [True]
    assert not states(out) and len(list((tmp_path / "runs-logs").glob("*.log"))) == 3
    code, nothing, _ = run_cli([*KILLED_GRID, "--out", str(out), "--dry-run"], capsys,
                               monkeypatch)
    assert nothing.startswith(f"sweep into {out}: 2 run(s): 2 skipped (completed)")


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (Linux's /proc children lists)."""
    found, queue = [], [pid]
    while queue:
        parent = queue.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            children = (task / "children").read_text().split()
            found += [int(c) for c in children]
            queue += [int(c) for c in children]
    return found


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except FileNotFoundError:
        return ""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_submitit_job_saves_on_its_signal_requeues_and_resumes(tmp_path: Path) -> None:
    pytest.importorskip("submitit")
    out = tmp_path / "runs"
    sweep = start(["sweep", "--methods", "lora", "--steps", "40", "--checkpoint-every", "5",
                   *SMALL, "--out", str(out), "--executor", "submitit-local",
                   "--time-min", "10"])
    wait_for(lambda: out.is_dir() and bool(states(out)), "the job's first saved state",
             timeout=300, process=sweep)
    (job,) = [p for p in descendants(sweep.pid) if "submitit.core._submit" in command_line(p)]
    signal_step = json.loads(next(out.glob("*.json")).read_text())["steps_done"]
    os.kill(job, signal.SIGUSR2)  # what SLURM sends --signal-delay-s before the time limit
    printed, err = sweep.communicate(timeout=300)
    assert sweep.returncode == 0, err + printed
    assert "sweep: 1 of 1 setting(s) completed" in printed
    (record,) = records(out)
    assert record["status"] == "completed"
    ((resumed,),) = [[r["step"] for r in record["resumes"]]]
    assert signal_step <= resumed < 40
    reference = run(small("lora", 0, tmp_path / "plain"), show_progress=False)
    assert record["metrics"] == reference.metrics
    log = "".join(p.read_text() for p in (tmp_path / "runs-logs").glob("*_log.*"))
    assert "Caught signal SIGUSR2" in log and "Requeued job" in log


def test_submitit_missing_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "submitit", None)  # what an absent package raises
    monkeypatch.delitem(sys.modules, "pebench.sweep_submitit", raising=False)
    code, _, err = run_cli(["sweep", "--methods", "lora", *SMALL, "--steps", "1", "--out",
                            str(tmp_path), "--executor", "slurm"], capsys, monkeypatch)
    assert code == 2
    assert err.strip() == ("error: --executor slurm needs submitit: pip install -e '.[slurm]' "
                           "(or pip install submitit).")


def test_expand_refuses_an_unbuildable_setting_before_running() -> None:
    from pebench.sweep import check_buildable

    configs = expand(RunConfig(method="adapter", weights="none"), ["adapter"], [0],
                     parse_set_axes(["adapter.reduction=4,5"]))
    with pytest.raises(PebenchError, match="reduction=5 must divide"):
        check_buildable(configs, drop_unavailable=False)


FAKE_SBATCH = """#!/bin/sh
# Stands in for SLURM's sbatch: keeps the script it was given, answers as sbatch does.
cp "$1" "$(dirname "$0")/submitted.sh"
echo "Submitted batch job 4242"
"""


def test_slurm_jobs_carry_the_cluster_options(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("submitit")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("sbatch", FAKE_SBATCH), ("srun", "#!/bin/sh\n")):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    code, printed, err = run_cli(
        ["sweep", "--methods", "lora", "--seeds", "0,1", "--steps", "1", *SMALL, "--out",
         str(tmp_path / "runs"), "--executor", "slurm", "--partition", "gpu", "--account",
         "vision", "--time-min", "90", "--gpus-per-job", "2", "--cpus-per-job", "8",
         "--array-parallelism", "1", "--signal-delay-s", "300", "--no-wait"], capsys,
        monkeypatch)
    assert code == 0, err
    assert "submitted 2 job(s) (4242_0, 4242_1)" in printed
    script = (bin_dir / "submitted.sh").read_text()
    for line in ("#SBATCH --partition=gpu", "#SBATCH --account=vision", "#SBATCH --time=90",
                 "#SBATCH --gpus-per-node=2", "#SBATCH --cpus-per-task=8",
                 "#SBATCH --array=0-1%1", "#SBATCH --signal=USR2@300",
                 "#SBATCH --job-name=pebench-sweep"):
        assert line in script, line
    assert "submitit.core._submit" in script and str(tmp_path / "runs-logs") in script


def test_slurm_without_a_cluster_is_one_line(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("submitit")
    monkeypatch.setenv("PATH", str(tmp_path))  # no srun, no sbatch
    code, _, err = run_cli(["sweep", "--methods", "lora", "--steps", "1", *SMALL, "--out",
                            str(tmp_path / "runs"), "--executor", "slurm"], capsys,
                           monkeypatch)
    assert code == 2
    (line,) = err.strip().splitlines()
    assert line.startswith("error: --executor slurm cannot submit here (") and \
        "run it on a SLURM login node" in line, line
