"""The SLURM sweep executor, through submitit (``pip install -e '.[slurm]'``).

Every setting is one job of a job array. A job plans its setting against the results folder
when it starts, so a job that SLURM requeues (time limit, preemption) resumes its own saved
state. On submitit's signal (SIGUSR2, ``--signal-delay-s`` before the time limit) the job asks
its run to stop at the next step boundary and save its state, then submitit requeues it. The
same jobs run on this machine with ``--executor submitit-local`` (submitit's local executor),
which is how pebench tests this path without a cluster.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import submitit

from pebench.config import RunConfig
from pebench.interrupt import StopRequest
from pebench.sweep import carry_out

# How long a job waits, inside submitit's signal handler, for its run to save its state.
SAVE_WAIT_S = 120.0


class SweepJob(submitit.helpers.Checkpointable):
    """One setting of a sweep; training runs in a worker thread so that the main thread stays
    free for submitit's signal handler."""

    def __call__(self, config: RunConfig) -> str:
        self._stop = StopRequest()
        outcome: dict[str, Any] = {}

        def work() -> None:
            try:
                record = carry_out(config, self._stop)
                outcome["result"] = "skipped" if record is None else record.run_id
            except BaseException as exc:  # re-raised in the job's main thread
                outcome["error"] = exc

        self._thread = threading.Thread(target=work, name="pebench-run", daemon=True)
        self._thread.start()
        while self._thread.is_alive():
            self._thread.join(timeout=0.5)  # short waits: signals are handled in between
        if "error" in outcome:
            raise outcome["error"]
        return str(outcome["result"])

    def checkpoint(self, config: RunConfig) -> submitit.helpers.DelayedSubmission:
        thread = getattr(self, "_thread", None)
        if thread is not None and thread.is_alive():
            self._stop.request("SIGUSR2")
            thread.join(timeout=SAVE_WAIT_S)
        return submitit.helpers.DelayedSubmission(SweepJob(), config)


@dataclass(frozen=True)
class ClusterOptions:
    cluster: Literal["slurm", "local"]
    time_min: int
    partition: str | None = None
    account: str | None = None
    gpus_per_job: int = 0
    cpus_per_job: int | None = None
    array_parallelism: int = 256
    signal_delay_s: int = 120
    max_requeues: int = 3


def submit(configs: list[RunConfig], logs: Path, options: ClusterOptions) -> list[Any]:
    """Submit one job per config (a job array); returns submitit's jobs."""
    folder = logs  # submitit names every file after its job id
    executor: Any
    if options.cluster == "slurm":
        executor = submitit.SlurmExecutor(folder, max_num_timeout=options.max_requeues)
        parameters: dict[str, Any] = {
            "job_name": "pebench-sweep", "time": options.time_min,
            "signal_delay_s": options.signal_delay_s,
            "array_parallelism": options.array_parallelism, "partition": options.partition,
            "account": options.account, "cpus_per_task": options.cpus_per_job,
            "gpus_per_node": options.gpus_per_job or None}
        executor.update_parameters(**{k: v for k, v in parameters.items() if v is not None})
    else:
        executor = submitit.LocalExecutor(folder, max_num_timeout=options.max_requeues)
        executor.update_parameters(timeout_min=options.time_min,
                                   signal_delay_s=options.signal_delay_s)
    return executor.map_array(SweepJob(), configs)
