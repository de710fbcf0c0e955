"""The Python front door: ``run(config)`` and ``resume(run)``, each returning the finished
RunRecord. The CLI and the sweep executors are thin layers over these two."""

from __future__ import annotations

import dataclasses
import traceback
from pathlib import Path
from typing import Any

import torch

from pebench.checkpoint import TrainingState
from pebench.config import RunConfig, method_config
from pebench.data.base import DATASETS
from pebench.digest import file_sha256
from pebench.distributed import broadcast_object, check_divides, joined, ranks_from_environment
from pebench.errors import PebenchError
from pebench.execution import Execution, resolve_weights
from pebench.interrupt import RunInterrupted, StopRequest
from pebench.method import METHODS
from pebench.model import build_model
from pebench.precision import check_precision
from pebench.preflight import check_output_dir, resolve_device
from pebench.primary import registered_primary_metric
from pebench.provenance import git_commit, software_versions
from pebench.results import RunRecord, new_run_id, now_iso, read_record
from pebench.run_files import STATE_SUFFIX, RunFiles, RunLock
from pebench.settings import MOVABLE, differences, jsonable, setting


def run(config: RunConfig, show_progress: bool = True,
        stop: StopRequest | None = None) -> RunRecord:
    """Validate, build, train, evaluate and record one run.

    Invalid settings raise PebenchError before anything is written. Once the run has started,
    a stop request ends it as ``interrupted`` (RunInterrupted) with its state saved, and any
    failure is recorded as ``status: failed`` with its error and then re-raised. Under
    torchrun every process calls this; rank 0 names and records the run.
    """
    config = config.resolved()
    ranks = ranks_from_environment()
    check_divides(ranks, config.batch_size)
    device = resolve_device(config.device)
    check_precision(config.precision, device)
    if ranks.is_main:
        check_output_dir(config.out)
    check_method_fits(config)
    with joined(ranks, device) as device:
        lock = RunLock.reserve(config.out, lambda: new_run_id(
            config.method, config.dataset, config.backbone, config.seed)) if ranks.is_main else None
        run_id = broadcast_object(ranks, lock.files.run_id if lock else None)
        record = RunRecord(
            run_id=str(run_id), created_at=now_iso(), method=config.method,
            method_config=jsonable(method_config(config.method, config.method_overrides)),
            tasks=list(config.tasks or ()), dataset=config.dataset, backbone=config.backbone,
            img_size=config.img_size or 0, seed=config.seed, steps=config.steps or 0,
            config=jsonable(config), versions=software_versions(), git_commit=git_commit(),
            primary_metric={task: registered_primary_metric(task).to_json()
                            for task in config.tasks or ()},
            delta_m_reference_run=METHODS.get(config.method).delta_m_reference)
        execution = Execution(config, device, record, RunFiles(config.out, str(run_id)),
                              stop or StopRequest(), show_progress, ranks=ranks)
        return _supervised(execution, lock)


def resume(reference: str | Path, out: Path = Path("results/runs"),
           changes: dict[str, Any] | None = None, show_progress: bool = True,
           stop: StopRequest | None = None) -> RunRecord:
    """Continue an interrupted, killed or failed run from its saved state, to the metrics the
    uninterrupted run would have had. ``reference`` is a run id in ``out`` or the path of a
    state file; ``changes`` are RunConfig fields the caller gave again, refused when they
    change the setting (the device, the checkpoint cadence and the loader workers may
    change). Under torchrun every process calls this; rank 0 holds the run's lock."""
    files = locate_run(reference, out)
    ranks = ranks_from_environment()
    lock = RunLock.take(files) if ranks.is_main else None
    try:
        record = _read_resumable_record(files)
        config = _resumed_config(record, changes or {}, files)
        check_divides(ranks, config.batch_size)
        device = resolve_device(config.device)
        check_precision(config.precision, device)
        state = TrainingState.load(files.state)
        weights = resolve_weights(config, show_progress and ranks.is_main)
        sha = file_sha256(weights)
        if sha != state.weights_sha256:
            raise PebenchError(f"cannot resume run {files.run_id}: its backbone weights had "
                               f"sha256 {state.weights_sha256}, '{weights}' has {sha}.")
    except BaseException:
        if lock is not None:
            lock.release()
        raise
    with joined(ranks, device) as device:
        record.resumes.append({"step": state.step, "at": now_iso(), "device": str(device),
                               "processes": ranks.world_size})
        execution = Execution(config, device, record, files, stop or StopRequest(),
                              show_progress, state=state, weights=weights, ranks=ranks)
        return _supervised(execution, lock)


def locate_run(reference: str | Path, out: Path) -> RunFiles:
    """The files of a run named by its id (in ``out``) or by its state file."""
    path = Path(reference)
    if path.name.endswith(STATE_SUFFIX) and path.exists():
        return RunFiles.of_state(path)
    files = RunFiles(out, str(reference))
    if not files.record.is_file() and not files.state.is_file():
        raise PebenchError(f"no run '{reference}' in '{out}'; give a run id from that folder "
                           f"(with --out DIR) or the path of its {STATE_SUFFIX} file.")
    return files


def _resumed_config(record: RunRecord, changes: dict[str, Any], files: RunFiles) -> RunConfig:
    """The run's own config with ``changes``; refused when they change its setting."""
    stored = RunConfig.from_record(record.config)
    changes = dict(changes)
    if "method_overrides" in changes:  # --set given again adds to the run's own
        changes["method_overrides"] = {**stored.method_overrides, **changes["method_overrides"]}
    config = dataclasses.replace(stored, **changes, out=files.out).resolved()
    asked = setting(jsonable(config), jsonable(method_config(config.method,
                                                             config.method_overrides)))
    # The stored config through RunConfig: a field newer than the record has its default.
    refused = differences(setting(jsonable(stored), record.method_config), asked, MOVABLE)
    if config.method != record.method:  # its hyperparameters differ too: say it once
        refused = [line for line in refused if line.startswith("--method")]
    if refused:
        raise PebenchError(f"cannot resume run {files.run_id} with another setting: it was "
                           f"started with {'; '.join(refused)}. Leave those flags out.")
    return config


def _read_resumable_record(files: RunFiles) -> RunRecord:
    try:
        record = read_record(files.record)
    except (OSError, ValueError) as exc:
        raise PebenchError(f"cannot resume run {files.run_id}: its record '{files.record}' "
                           f"cannot be read ({exc}).") from None
    if record.status == "completed":
        raise PebenchError(f"run {files.run_id} is completed; there is nothing to resume.")
    if not files.state.is_file():
        raise PebenchError(f"run {files.run_id} has no saved state to resume from (it stopped "
                           "before its first checkpoint); start it again with pebench run.")
    return record


def _supervised(execution: Execution, lock: RunLock | None) -> RunRecord:
    """Run it; record any failure; always give the run's lock back (rank 0 holds it)."""
    try:
        execution.run()
        return execution.record
    except RunInterrupted:
        raise
    except BaseException as exc:
        if execution.started or not isinstance(exc, PebenchError):  # else: bad input
            execution.record_failure(describe_exception(exc),
                                     interrupted=isinstance(exc, KeyboardInterrupt))
        raise
    finally:
        if lock is not None:
            lock.release()


def check_method_fits(config: RunConfig) -> None:
    """Build the model on the meta device (no memory, no initialisation) before anything is
    recorded: a setting that a method refuses in ``attach`` (a reduction that does not divide
    the stage widths, a PEFT target that matches nothing) is bad input, not a failed run.
    Anything else the meta device alone trips over is left to the real build."""
    assert config.tasks is not None and config.img_size is not None
    info = DATASETS.get(config.dataset).info
    try:
        with torch.device("meta"):
            build_model(config.method, method_config(config.method, config.method_overrides),
                        config.backbone, config.img_size, config.tasks, info)
    except PebenchError:
        raise
    except Exception:  # a limitation of the meta device, not of the user's input
        pass


def describe_exception(exc: BaseException) -> str:
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted by a second signal before the state could be saved"
    if isinstance(exc, PebenchError):
        return str(exc)
    frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    where = f" (at {Path(frame.filename).name}:{frame.lineno})" if frame else ""
    return f"{type(exc).__name__}: {exc}{where}"
