"""``pebench sweep``: a grid of runs on this machine or on SLURM, resumable by re-running."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from pebench.console import note, print_comparison, say, split_list
from pebench.defaults import DEFAULT_BATCH_SIZE, DEFAULT_CHECKPOINT_MINUTES, DEFAULT_LR, PEFT_LR
from pebench.errors import MissingDependency, PebenchError, first_line


class Executor(str, Enum):
    local = "local"
    slurm = "slurm"
    submitit_local = "submitit-local"


def sweep_command(
    methods: Annotated[str, typer.Option(help="comma-separated methods, or 'all'")],
    seeds: Annotated[str, typer.Option(help="comma-separated seeds")] = "0",
    tasks: Annotated[str | None, typer.Option(
        help="comma-separated tasks (default: the dataset's default tasks)")] = None,
    dataset: Annotated[str, typer.Option(help="dataset name")] = "synthetic",
    data_root: Annotated[Path | None, typer.Option(help="dataset folder on disk")] = None,
    backbone: Annotated[str, typer.Option(help="see 'pebench list backbones'")] = "swin-nano",
    weights: Annotated[str, typer.Option(help="'auto', 'none' or a checkpoint path")] = "auto",
    img_size: Annotated[int | None, typer.Option(help="input size (default: dataset's)")] = None,
    steps: Annotated[int | None, typer.Option(help="training steps of every run")] = None,
    epochs: Annotated[int | None, typer.Option(help="training epochs instead of steps")] = None,
    batch_size: Annotated[int, typer.Option(help="images per step")] = DEFAULT_BATCH_SIZE,
    eval_batch_size: Annotated[int | None, typer.Option(
        help="images per evaluation batch (default: --batch-size)")] = None,
    lr: Annotated[float | None, typer.Option(
        help=f"peak learning rate (AdamW; default: each method's, {PEFT_LR:g} for the "
             f"parameter-efficient ones, {DEFAULT_LR:g} for full fine-tuning)")] = None,
    decoder_lr: Annotated[float | None, typer.Option(
        help="peak learning rate of the task decoders (default: each method's)")] = None,
    eval_every: Annotated[int, typer.Option(help="also evaluate every N steps")] = 0,
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="a hyperparameter axis method.key=v1,v2 (repeatable)")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N")] = "auto",
    out: Annotated[Path, typer.Option(help="results folder of every run")]
        = Path("results/runs"),
    checkpoint_every: Annotated[int, typer.Option(help="save each run's state every N steps")]
        = 0,
    checkpoint_minutes: Annotated[float, typer.Option(
        help="save each run's state every M minutes")] = DEFAULT_CHECKPOINT_MINUTES,
    precision: Annotated[str, typer.Option(help="fp32, bf16 or fp16 (autocast)")] = "fp32",
    compile: Annotated[bool, typer.Option(help="torch.compile every run's forward pass")]
        = False,
    workers: Annotated[int | None, typer.Option(help="data loader processes of every run")]
        = None,
    executor: Annotated[Executor, typer.Option(
        help="local (processes here), slurm (submitit), or submitit-local (the SLURM jobs, "
             "run here by submitit's local executor)")] = Executor.local,
    jobs: Annotated[int, typer.Option(help="local: runs at a time (cores are split)")] = 1,
    logs: Annotated[Path | None, typer.Option(
        help="folder of the runs' logs (default: beside --out, OUT-logs)")] = None,
    partition: Annotated[str | None, typer.Option(help="slurm: partition")] = None,
    account: Annotated[str | None, typer.Option(help="slurm: account")] = None,
    time_min: Annotated[int, typer.Option(help="slurm: time limit of a job, minutes")] = 1440,
    gpus_per_job: Annotated[int, typer.Option(help="slurm: GPUs of a job")] = 1,
    cpus_per_job: Annotated[int | None, typer.Option(help="slurm: CPUs of a job")] = None,
    array_parallelism: Annotated[int, typer.Option(help="slurm: jobs running at once")] = 256,
    signal_delay_s: Annotated[int, typer.Option(
        help="slurm: seconds before the time limit at which a job saves and requeues")] = 120,
    max_requeues: Annotated[int, typer.Option(help="slurm: time-outs a job may requeue after")]
        = 3,
    wait: Annotated[bool, typer.Option(help="slurm: wait for the jobs and print the table")]
        = True,
    dry_run: Annotated[bool, typer.Option(
        help="list the runs and what would be skipped or resumed; run nothing")] = False,
) -> None:
    """Run a grid of settings into one results folder; running it again finishes it.

    The grid is methods × --set axes × seeds. Settings that have a completed record are
    skipped and interrupted ones resumed, so re-running the same command finishes a sweep
    that was killed halfway."""
    from pebench.config import RunConfig
    from pebench.sweep import (
        check_buildable,
        close_stale_records,
        expand,
        parse_set_axes,
        plan,
        summary,
    )

    if jobs < 1:
        raise PebenchError(f"--jobs must be ≥ 1, got {jobs}.")
    names = list(split_list(methods) or ())
    seed_list = _seeds(seeds)
    if not names:
        raise PebenchError("--methods names no method; give a comma-separated list or 'all'.")
    use_all = names == ["all"]
    if use_all:
        from pebench.method import METHODS

        names = METHODS.names()
    out = out.resolve()
    template = RunConfig(
        method=names[0], tasks=split_list(tasks), dataset=dataset,
        data_root=data_root.resolve() if data_root else None, backbone=backbone,
        weights=weights if weights in ("auto", "none") else str(Path(weights).resolve()),
        img_size=img_size, steps=steps, epochs=epochs, batch_size=batch_size,
        eval_batch_size=eval_batch_size, lr=lr, decoder_lr=decoder_lr, eval_every=eval_every,
        device=device, out=out,
        checkpoint_every=checkpoint_every, checkpoint_minutes=checkpoint_minutes,
        precision=precision, compile=compile, workers=workers)
    axes = parse_set_axes(set_ or [])
    configs = expand(template, names, seed_list, axes)
    configs, left_out = check_buildable(configs, drop_unavailable=use_all)
    for line in left_out:
        note(f"note: {line}")
    from pebench.preflight import check_output_dir

    check_output_dir(out)
    planned = plan(configs, out)
    say(f"sweep into {out}: {summary(planned)}")
    if dry_run:
        for item in planned:
            existing = f" ({item.run_id})" if item.run_id else ""
            say(f"  {item.action:<8} {item.label()}{existing}")
        return
    close_stale_records(out)
    todo = [p for p in planned if p.action in ("new", "resume")]
    logs = logs.resolve() if logs else out.with_name(out.name + "-logs")
    if executor is Executor.local:
        _run_locally(todo, jobs, logs, out)
    else:
        _run_with_submitit(todo, executor, logs, out, partition, account, time_min,
                           gpus_per_job, cpus_per_job, array_parallelism, signal_delay_s,
                           max_requeues, wait)
        if not wait:
            return
    _finish(configs, out, sorted({f"method.{key}" for keys in axes.values() for key in keys}))


def _seeds(value: str) -> list[int]:
    try:
        seeds = [int(s) for s in split_list(value) or ()]
    except ValueError:
        raise PebenchError(f"--seeds '{value}' must be comma-separated integers.") from None
    if not seeds:
        raise PebenchError("--seeds names no seed.")
    return seeds


def _run_locally(todo: list, jobs: int, logs: Path, out: Path) -> None:
    from pebench.interrupt import StopRequest, signal_exit_code, stop_on_signals
    from pebench.sweep import plan
    from pebench.sweep_local import Finished, run_local

    def report(done: Finished) -> None:
        # The record says how the run ended (a run may complete as the stop arrives).
        (now,) = plan([done.run.config], out)
        word = {"skip": "completed", "resume": "interrupted (state saved)"}.get(
            now.action, f"failed (exit {done.exit_code}; log: {done.log})")
        say(f"  {done.run.label()}: {word}")

    with stop_on_signals(StopRequest()) as stop:
        run_local(todo, jobs, logs, stop, report)
    if stop.requested:
        note(f"sweep interrupted by {stop.reason}: the running runs saved their state; run "
             "the same command again to resume them.")
        raise typer.Exit(signal_exit_code(stop.reason))


def _run_with_submitit(todo: list, executor: Executor, logs: Path, out: Path,
                       partition: str | None, account: str | None, time_min: int,
                       gpus_per_job: int, cpus_per_job: int | None, array_parallelism: int,
                       signal_delay_s: int, max_requeues: int, wait: bool) -> None:
    try:
        from pebench.sweep_submitit import ClusterOptions, submit
    except ImportError:
        raise MissingDependency(f"--executor {executor.value} needs submitit: pip install -e "
                                "'.[slurm]' (or pip install submitit).") from None
    if not todo:
        return
    cluster = "slurm" if executor is Executor.slurm else "local"
    options = ClusterOptions(cluster=cluster, time_min=time_min, partition=partition,
                             account=account, gpus_per_job=gpus_per_job if cluster == "slurm"
                             else 0, cpus_per_job=cpus_per_job,
                             array_parallelism=array_parallelism,
                             signal_delay_s=signal_delay_s, max_requeues=max_requeues)
    try:
        submitted = submit([p.config for p in todo], logs, options)
    except (OSError, RuntimeError) as exc:  # no srun / sbatch here, or sbatch refused
        raise PebenchError(f"--executor slurm cannot submit here ({first_line(exc)}); run it "
                           "on a SLURM login node, or use --executor local.") from None
    say(f"submitted {len(submitted)} job(s) ({', '.join(j.job_id for j in submitted[:5])}"
        f"{', ...' if len(submitted) > 5 else ''}); logs in {logs}")
    if not wait:
        say("re-run the same command once they have ended to print the table (and to resume "
            "any that did not finish).")
        return
    for item, job in zip(todo, submitted, strict=True):
        try:
            job.result()
            say(f"  {item.label()}: done (job {job.job_id})")
        except Exception as exc:  # submitit re-raises the job's failure
            first = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
            say(f"  {item.label()}: failed (job {job.job_id}): {first}")


def _finish(configs: list, out: Path, group_by: list[str]) -> None:
    """The state of the whole grid after this pass, and the table of the folder, split by
    the swept hyperparameters."""
    from pebench.compare import compare
    from pebench.sweep import plan

    after = plan(configs, out)
    completed = sum(p.action == "skip" for p in after)
    comparison = compare(out, group_by) if completed else None
    if comparison is not None:
        print_comparison(comparison)
    say(f"sweep: {completed} of {len(after)} setting(s) completed in {out}")
    if completed < len(after):
        note(f"error: {len(after) - completed} setting(s) did not complete; see the failed "
             "runs above and their logs, fix the cause, and run the same command again.")
        raise typer.Exit(1)
