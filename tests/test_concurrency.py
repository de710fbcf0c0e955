"""Any number of writers into one results folder: unique run ids, whole records, and locks
that say which runs are alive."""

from __future__ import annotations

import fcntl
import os
import signal
import time
from pathlib import Path

import pytest
from processes import SMALL_RUN, records, start, wait_for

from pebench.run_files import RunFiles, RunLock, is_running
from pebench.runs import scan_records

WRITERS = 8


def test_eight_concurrent_runs_of_one_setting_write_eight_records(tmp_path: Path) -> None:
    # One task: the evaluation, most of each run, costs a quarter of the default four.
    args = ["run", *SMALL_RUN, "--method", "decoder-only", "--steps", "1", "--seed", "0",
            "--tasks", "saliency", "--out", str(tmp_path)]
    # One thread each: eight processes share two cores without oversubscribing them.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    started = time.monotonic()
    processes = [start(args, env=env) for _ in range(WRITERS)]
    outputs = [p.communicate(timeout=600) for p in processes]
    seconds = time.monotonic() - started
    assert [p.returncode for p in processes] == [0] * WRITERS, [err for _, err in outputs]
    found = records(tmp_path)
    assert len(found) == WRITERS and len({r["run_id"] for r in found}) == WRITERS
    assert all(r["status"] == "completed" for r in found)
    assert len({r["created_at"][:16] for r in found}) <= 2, "they ran at the same time"
    metrics = [r["metrics"] for r in found]
    assert all(m == metrics[0] for m in metrics), "one setting, one result"
    assert len(list(tmp_path.glob("*.safetensors"))) == WRITERS
    assert not list(tmp_path.glob(".*.tmp")) and not list(tmp_path.glob("*.lock"))
    assert {p.stat().st_mode & 0o777 for p in tmp_path.glob("*.json")} == {0o644}
    scan = scan_records(tmp_path)
    assert len(scan.records) == WRITERS and not scan.skipped
    print(f"{WRITERS} concurrent runs in {seconds:.1f} s")


def test_a_taken_run_id_is_never_handed_out_twice(tmp_path: Path) -> None:
    ids = iter(["same", "same", "same", "other"])
    first = RunLock.reserve(tmp_path, lambda: next(ids))
    second = RunLock.reserve(tmp_path, lambda: next(ids))
    assert (first.files.run_id, second.files.run_id) == ("same", "other")
    first.release()
    (tmp_path / "same.json").write_text("{}")  # a finished run keeps its id
    third = RunLock.reserve(tmp_path, iter(["same", "third"]).__next__)
    assert third.files.run_id == "third"


def test_the_lock_of_a_killed_run_is_free(tmp_path: Path) -> None:
    process = start(["run", *SMALL_RUN, "--steps", "100000", "--out", str(tmp_path)])
    wait_for(lambda: bool(records(tmp_path)), "the running record", process=process)
    (record,) = records(tmp_path)
    files = RunFiles(tmp_path, record["run_id"])
    assert is_running(files)
    fd = os.open(files.lock, os.O_RDONLY)
    with pytest.raises(BlockingIOError):
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.close(fd)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=60)
    assert files.lock.exists() and not is_running(files)
    RunLock.take(files).release()
    assert not files.lock.exists()
