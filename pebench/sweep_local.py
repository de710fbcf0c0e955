"""The local sweep executor: N ``pebench run`` processes at a time on this machine.

Each run is its own process (the same command a user would type), in its own session so a
Ctrl-C at the terminal reaches only the sweep, which then asks every running run to save its
state and stop (SIGTERM) and starts no new one. The cores are split between the processes
(``OMP_NUM_THREADS``), so N jobs do not oversubscribe them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pebench.interrupt import StopRequest
from pebench.sweep import PlannedRun


@dataclass(frozen=True)
class Finished:
    run: PlannedRun
    exit_code: int
    log: Path


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def threads_per_job(jobs: int) -> int:
    return max(1, available_cores() // jobs)


def run_local(runs: list[PlannedRun], jobs: int, logs: Path, stop: StopRequest,
              on_finish: Callable[[Finished], None]) -> list[Finished]:
    """Carry out ``runs`` (none of them a skip), ``jobs`` at a time; returns how each ended.
    A stop request forwards SIGTERM once to the running ones and waits for them."""
    logs.mkdir(parents=True, exist_ok=True)
    threads = str(threads_per_job(jobs))
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    waiting = list(enumerate(runs))
    running: dict[subprocess.Popen[bytes], tuple[PlannedRun, Path]] = {}
    finished: list[Finished] = []
    forwarded = False
    while running or (waiting and not stop.requested):
        while waiting and len(running) < jobs and not stop.requested:
            index, planned = waiting.pop(0)
            log = logs / f"{index:04d}-{planned.config.method}-s{planned.config.seed}.log"
            with open(log, "ab") as handle:
                process = subprocess.Popen(
                    [sys.executable, "-m", "pebench", "run", *planned.run_args(), "--quiet"],
                    stdout=handle, stderr=subprocess.STDOUT, env=env, start_new_session=True)
            running[process] = (planned, log)
        if stop.requested and not forwarded:
            for process in running:
                process.send_signal(signal.SIGTERM)
            forwarded = True
        for process in [p for p in running if p.poll() is not None]:
            planned, log = running.pop(process)
            done = Finished(planned, process.returncode, log)
            finished.append(done)
            on_finish(done)
        time.sleep(0.05)
    return finished
