"""Sweeps: a grid of settings expanded into runs, planned against the records already in the
results folder (completed: skipped; resumable: resumed; the rest: started), so that a sweep
killed halfway finishes by running the same command again."""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import product
from pathlib import Path
from typing import Literal

from pebench.config import RunConfig, method_config
from pebench.errors import MissingDependency, PebenchError, unknown_name
from pebench.interrupt import StopRequest
from pebench.method import METHODS
from pebench.results import RunRecord, now_iso
from pebench.run_files import RunFiles, is_running
from pebench.runs import scan_records
from pebench.settings import jsonable, setting, setting_key

Action = Literal["skip", "resume", "new", "running"]
ACTION_WORDS = {"skip": "skipped (completed)", "resume": "resumed", "new": "started",
                "running": "left alone (running in another process)"}


@dataclass(frozen=True)
class PlannedRun:
    config: RunConfig
    action: Action
    run_id: str | None = None  # the existing run it skips, resumes or leaves alone

    def label(self) -> str:
        config = self.config
        extra = "".join(f" {k}={v}" for k, v in sorted(config.method_overrides.items()))
        return f"{config.method} seed {config.seed}{extra}"

    def run_args(self) -> list[str]:
        """The ``pebench run`` arguments that carry this run out."""
        if self.action == "resume":
            return ["--resume", str(self.run_id), "--out", str(self.config.out)]
        return run_arguments(self.config)


def parse_set_axes(items: Iterable[str]) -> dict[str, dict[str, list[str]]]:
    """``["lora.rank=4,8", "lora.targets=attn.qkv,mlp.fc1"]`` → per method, per key, the
    values to sweep. Commas separate values, except for a tuple-valued hyperparameter, whose
    one value may hold commas: repeat ``--set`` to sweep those."""
    axes: dict[str, dict[str, list[str]]] = {}
    for item in items:
        name, sep, raw = item.partition("=")
        method, dot, key = name.partition(".")
        if not sep or not dot or not key:
            raise PebenchError(f"--set '{item}' is not of the form method.key=v1,v2,...")
        if method not in METHODS:
            raise unknown_name("method", method, METHODS.names())
        hints = typing.get_type_hints(METHODS.get(method).Config)
        is_tuple = typing.get_origin(hints.get(key)) is tuple
        values = [raw.strip()] if is_tuple else [v.strip() for v in raw.split(",") if v.strip()]
        if not values:
            raise PebenchError(f"--set '{item}' gives no value.")
        axes.setdefault(method, {}).setdefault(key.strip(), []).extend(values)
    return axes


def expand(template: RunConfig, methods: list[str], seeds: list[int],
           axes: dict[str, dict[str, list[str]]]) -> list[RunConfig]:
    """Every (method, hyperparameter values, seed) of the grid, validated as a run is. A
    ``--set`` axis of a method not in ``methods`` is an error, not silently unused."""
    unused = sorted(set(axes) - set(methods))
    if unused:
        raise PebenchError(f"--set names {', '.join(unused)}, which is not among the swept "
                           f"methods ({', '.join(methods)}).")
    if len(set(seeds)) != len(seeds) or len(set(methods)) != len(methods):
        raise PebenchError("a method or a seed is listed twice.")
    configs = []
    for method in methods:
        keys = list(axes.get(method, {}))
        for values in product(*(axes[method][k] for k in keys)):
            overrides = dict(zip(keys, values, strict=True))
            for seed in seeds:
                configs.append(dataclasses.replace(template, method=method, seed=seed,
                                                   method_overrides=overrides).resolved())
    return configs


def check_buildable(configs: list[RunConfig], drop_unavailable: bool
                    ) -> tuple[list[RunConfig], list[str]]:
    """Build each distinct (method, hyperparameters) on the meta device, so that a setting a
    method refuses stops the sweep before any run. With ``drop_unavailable`` (``--methods
    all``), a method whose optional dependency is missing is left out with a note instead."""
    from pebench.api import check_method_fits

    kept, notes, verdicts = [], [], {}
    for config in configs:
        key = (config.method, tuple(sorted(config.method_overrides.items())))
        if key not in verdicts:
            try:
                check_method_fits(config)
                verdicts[key] = None
            except MissingDependency as exc:
                if not drop_unavailable:
                    raise
                verdicts[key] = f"{config.method} left out: {exc}"
                notes.append(verdicts[key])
        if verdicts[key] is None:
            kept.append(config)
    return kept, notes


def plan(configs: list[RunConfig], out: Path) -> list[PlannedRun]:
    """What to do for each setting, given the records in ``out``."""
    by_setting: dict[str, list[RunRecord]] = {}
    for record in scan_records(out).records if out.is_dir() else []:
        key = setting_key(setting(record.config, record.method_config))
        by_setting.setdefault(key, []).append(record)
    return [_plan_one(config, by_setting.get(config_key(config), []), out)
            for config in configs]


def config_key(config: RunConfig) -> str:
    return setting_key(setting(jsonable(config), jsonable(
        method_config(config.method, config.method_overrides))))


def _plan_one(config: RunConfig, records: list[RunRecord], out: Path) -> PlannedRun:
    for record in records:
        if record.status == "completed":
            return PlannedRun(config, "skip", record.run_id)
    resumable = []
    for record in records:
        files = RunFiles(out, record.run_id)
        if is_running(files):
            return PlannedRun(config, "running", record.run_id)
        if files.state.is_file():
            resumable.append(record)
    if resumable:
        latest = max(resumable, key=lambda r: r.steps_done)
        return PlannedRun(config, "resume", latest.run_id)
    return PlannedRun(config, "new")


def close_stale_records(out: Path) -> None:
    """A ``running`` record that no live process owns, without a state, is a run killed
    before its first checkpoint: say so in it, so no table shows it as running."""
    for record in scan_records(out).records if out.is_dir() else []:
        files = RunFiles(out, record.run_id)
        if record.status == "running" and not is_running(files) and not files.state.exists():
            record.status = "failed"
            record.error = (f"the process ended at about step {record.steps_done} without "
                            f"saving a state (killed?); noticed by a sweep at {now_iso()}")
            record.resume_command = None
            record.write(out)


def run_arguments(config: RunConfig) -> list[str]:
    """The ``pebench run`` flags that reproduce a resolved config."""
    args = ["--method", config.method, "--dataset", config.dataset, "--backbone",
            config.backbone, "--weights", config.weights, "--batch-size", str(config.batch_size),
            "--lr", repr(config.lr), "--decoder-lr", repr(config.decoder_lr),
            "--seed", str(config.seed), "--device", config.device,
            "--out", str(config.out), "--eval-every", str(config.eval_every),
            "--checkpoint-every", str(config.checkpoint_every),
            "--checkpoint-minutes", repr(config.checkpoint_minutes),
            "--precision", config.precision, "--eval-resolution", config.eval_resolution]
    if config.compile:
        args.append("--compile")
    optional = {"--workers": config.workers,
                "--tasks": ",".join(config.tasks) if config.tasks else None,
                "--data-root": config.data_root, "--img-size": config.img_size,
                "--steps": config.steps if config.epochs is None else None,
                "--epochs": config.epochs, "--eval-batch-size": config.eval_batch_size}
    for flag, value in optional.items():
        if value is not None:
            args += [flag, str(value)]
    for key, value in config.method_overrides.items():
        args += ["--set", f"{key}={value}"]
    return args


def summary(planned: list[PlannedRun]) -> str:
    counts = {action: sum(p.action == action for p in planned) for action in ACTION_WORDS}
    parts = [f"{n} {ACTION_WORDS[a]}" for a, n in counts.items() if n]
    return f"{len(planned)} run(s): {', '.join(parts)}"


def carry_out(config: RunConfig, stop: StopRequest) -> RunRecord | None:
    """Plan one setting against its results folder now and do it: skip, resume or run.
    What a cluster job calls, so that a requeued job picks up its own saved state."""
    from pebench.api import resume, run

    (planned,) = plan([config], config.out)
    if planned.action == "skip":
        return None
    if planned.action == "running":
        raise PebenchError(f"run {planned.run_id} of this setting is running in another "
                           "process; not starting it twice.")
    if planned.action == "resume":
        return resume(str(planned.run_id), config.out, show_progress=False, stop=stop)
    return run(config, show_progress=False, stop=stop)
