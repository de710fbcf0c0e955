"""The ``pebench`` command line: parses flags, calls pebench.api, prints with rich."""

from __future__ import annotations

import os
import sys
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from pebench.cli_bench import bench_command
from pebench.cli_sweep import sweep_command
from pebench.console import (
    console,
    errors,
    note,
    print_at_least_minimum,
    print_comparison,
    print_unelided,
    say,
    split_list,
)
from pebench.defaults import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_CHECKPOINT_MINUTES,
    DEFAULT_LR,
    DEFAULT_STEPS,
    PEFT_LR,
)
from pebench.errors import PebenchError
from pebench.interrupt import RunInterrupted, signal_exit_code

if TYPE_CHECKING:
    from pebench.results import RunRecord

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Parameter-efficient multi-task dense prediction benchmark.")


class Listing(str, Enum):
    methods = "methods"
    tasks = "tasks"
    datasets = "datasets"
    backbones = "backbones"


@app.command("run")
def run_command(
    ctx: typer.Context,
    method: Annotated[str | None, typer.Option(
        help="registered method, see 'pebench list methods'")] = None,
    tasks: Annotated[str | None, typer.Option(
        help="comma-separated tasks (default: the dataset's default tasks)")] = None,
    dataset: Annotated[str, typer.Option(help="dataset name")] = "synthetic",
    data_root: Annotated[Path | None, typer.Option(help="dataset folder on disk")] = None,
    backbone: Annotated[str, typer.Option(help="see 'pebench list backbones'")] = "swin-nano",
    weights: Annotated[str, typer.Option(
        help="'auto' (embedded weights), 'none' (random init) or a checkpoint path")] = "auto",
    img_size: Annotated[int | None, typer.Option(help="input size (default: dataset's)")] = None,
    steps: Annotated[int | None, typer.Option(
        help=f"training steps (default {DEFAULT_STEPS})")] = None,
    epochs: Annotated[int | None, typer.Option(help="training epochs instead of steps")] = None,
    batch_size: Annotated[int, typer.Option(help="images per step")] = DEFAULT_BATCH_SIZE,
    eval_batch_size: Annotated[int | None, typer.Option(
        help="images per evaluation batch (default: --batch-size)")] = None,
    lr: Annotated[float | None, typer.Option(
        help=f"peak learning rate (AdamW; default: the method's, {PEFT_LR:g} for the "
             f"parameter-efficient ones, {DEFAULT_LR:g} for full fine-tuning)")]
        = None,
    decoder_lr: Annotated[float | None, typer.Option(
        help="peak learning rate of the task decoders (default: the method's; --lr, but "
             f"{PEFT_LR:g} for the hypernetwork methods)")] = None,
    seed: Annotated[int, typer.Option(help="seed of initialisation and data order")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N")] = "auto",
    out: Annotated[Path, typer.Option(help="directory for the run record")] = Path("results/runs"),
    eval_every: Annotated[int, typer.Option(help="also evaluate every N steps (0: end only)")] = 0,
    eval_resolution: Annotated[str, typer.Option(
        help="input: evaluate at the input size (MTLoRA's protocol, the published table's); "
             "original: resize predictions to each label's own size")] = "input",
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="method hyperparameter key=value (repeatable)")] = None,
    checkpoint_every: Annotated[int, typer.Option(
        help="save the resumable state every N steps (0: only by time)")] = 0,
    checkpoint_minutes: Annotated[float, typer.Option(
        help="save the resumable state every M minutes of training (0: only by steps)")]
        = DEFAULT_CHECKPOINT_MINUTES,
    precision: Annotated[str, typer.Option(
        help="fp32, or autocast to bf16 or fp16 (with a gradient scaler)")] = "fp32",
    compile: Annotated[bool, typer.Option(help="torch.compile the forward pass")] = False,
    workers: Annotated[int | None, typer.Option(
        help="data loader processes (default: 0 on a CPU, a share of the cores on CUDA)")]
        = None,
    resume: Annotated[str | None, typer.Option(
        help="continue an interrupted run: its run id (in --out) or its .state.pt file")]
        = None,
    quiet: Annotated[bool, typer.Option(help="no progress bar")] = False,
) -> None:
    """Train and evaluate one method; writes a run record (JSON) and a checkpoint.

    Ctrl-C or SIGTERM saves the training state and ends the run as interrupted, with the
    command that resumes it. Under torchrun (torchrun --nproc_per_node N -m pebench run ...)
    the N processes train one run data-parallel."""
    from pebench.config import RunConfig, parse_overrides
    from pebench.interrupt import StopRequest, stop_on_signals

    overrides = parse_overrides(set_ or [])
    with stop_on_signals(StopRequest()) as stop:
        if resume is not None:
            from pebench.api import locate_run
            from pebench.api import resume as resume_run

            given = _given_settings(ctx, overrides)
            record = resume_run(resume, out, given, show_progress=not quiet, stop=stop)
            out = locate_run(resume, out).out
        else:
            if method is None:
                raise PebenchError("give --method M (see 'pebench list methods'), or --resume "
                                   "RUN to continue an interrupted run.")
            config = RunConfig(
                method=method, tasks=split_list(tasks), dataset=dataset, data_root=data_root,
                backbone=backbone, weights=weights, img_size=img_size, steps=steps,
                epochs=epochs, batch_size=batch_size, eval_batch_size=eval_batch_size, lr=lr,
                decoder_lr=decoder_lr, seed=seed, device=device, out=out,
                eval_every=eval_every, eval_resolution=eval_resolution,
                method_overrides=overrides,
                checkpoint_every=checkpoint_every, checkpoint_minutes=checkpoint_minutes,
                precision=precision, compile=compile, workers=workers)
            config.precheck()  # bad input refused before torch is imported
            from pebench.api import run

            record = run(config, show_progress=not quiet, stop=stop)
    from pebench.distributed import ranks_from_environment

    if ranks_from_environment().is_main:
        _print_run(record, out)


# `pebench run` options that are RunConfig fields of the same name; given with --resume, each
# must repeat the interrupted run's setting (the device, the checkpoint cadence and the loader
# workers may change).
_RUN_FIELDS = ("method", "tasks", "dataset", "data_root", "backbone", "weights", "img_size",
               "steps", "epochs", "batch_size", "eval_batch_size", "lr", "decoder_lr", "seed",
               "device", "eval_every", "eval_resolution", "checkpoint_every", "checkpoint_minutes",
               "precision", "compile", "workers")


def _given_settings(ctx: typer.Context, overrides: dict[str, str]) -> dict[str, object]:
    """The options given on the command line (not left at their defaults), as RunConfig
    fields, for ``--resume`` to compare with the run's own."""
    given: dict[str, object] = {}
    for name in _RUN_FIELDS:
        source = ctx.get_parameter_source(name)  # typer's own click: compare by name
        if source is not None and source.name == "COMMANDLINE":
            value = ctx.params[name]
            given[name] = split_list(value) if name == "tasks" else value
    if overrides:
        given["method_overrides"] = overrides
    return given


def _print_run(record: RunRecord, out: Path) -> None:
    from pebench.reference import finished_run_delta_m

    table = Table(title=f"{record.method} on {record.dataset} ({record.backbone}, "
                        f"{record.steps} steps, seed {record.seed})")
    table.add_column("task")
    table.add_column("primary metric")
    table.add_column("value", justify="right")
    metrics = record.primary_metrics()
    for name, value in record.primary.items():
        table.add_row(name, f"{metrics[name].name} {metrics[name].arrow}", f"{value:.2f}")
    console.print(table)
    params = record.params
    console.print(f"trainable parameters: {params['trainable']:,} of {params['total']:,}   "
                  f"train {record.timing['train_s']:.1f} s (data wait "
                  f"{record.timing['data_s']:.1f} s), eval {record.timing['eval_s']:.1f} s",
                  soft_wrap=True)
    delta_m = finished_run_delta_m(record, out)
    if delta_m is not None:
        console.print(f"Δm {delta_m.value:+.2f}% against the {delta_m.reference.label} "
                      "(not stored: pebench compare recomputes it)", soft_wrap=True)
    console.print(f"record: {out / (record.run_id + '.json')}", soft_wrap=True)


app.command("sweep")(sweep_command)
app.command("bench")(bench_command)


@app.command("list")
def list_command(
    what: Annotated[Listing | None, typer.Argument(help="what to list (default: all)")] = None,
    verbose: Annotated[bool, typer.Option(
        "--verbose", help="methods: every --set key with its type, default and help")] = False,
) -> None:
    """List registered methods, tasks, datasets and backbones."""
    from pebench.catalog import catalog

    listed = catalog()
    for kind in Listing:
        if what is not None and kind != what:
            continue
        table = Table(title=kind.value, show_header=False, title_justify="left")
        table.add_column("name", style="bold")
        table.add_column("description")
        for entry in listed[kind.value]:
            table.add_row(entry["name"], entry["description"])
        console.print(table)
        if verbose and kind == Listing.methods:
            options = Table(title="method hyperparameters (--set key=value)",
                            title_justify="left")
            for column in ("method", "key", "type", "default"):
                options.add_column(column, no_wrap=True)
            options.add_column("help", min_width=30)
            for entry in listed["methods"]:
                if not entry["options"]:
                    options.add_row(entry["name"], "—", "", "", "no hyperparameters")
                for doc in entry["options"]:
                    options.add_row(entry["name"], doc["key"], doc["kind"], doc["default"],
                                    doc["help"])
            print_at_least_minimum(options)  # the help column wraps down to 30 characters


@app.command("pretrain")
def pretrain_command(
    backbone: Annotated[str, typer.Option(help="backbone with embedded weights")] = "swin-nano",
    force: Annotated[bool, typer.Option(help="rebuild even if cached")] = False,
    ship: Annotated[bool, typer.Option(
        help="also write the build, in fp16, as the weights pebench ships (maintainers, after "
             "a recipe change)")] = False,
    quiet: Annotated[bool, typer.Option(help="no progress bar")] = False,
) -> None:
    """Rebuild the embedded backbone weights from their recipe (synthetic pretext task) into
    the user cache; runs keep using the shipped weights unless given --weights PATH."""
    import json

    from pebench.backbones import BACKBONES
    from pebench.digest import file_sha256
    from pebench.pretrain import PretrainConfig, embedded_weights_path, pretrain
    from pebench.pretrain import ship as ship_weights

    if not BACKBONES.get(backbone).embedded_weights:
        embedded = [e.name for e in BACKBONES.entries() if e.obj.embedded_weights]
        raise PebenchError(f"backbone '{backbone}' has no embedded pretext weights; only "
                           f"{', '.join(embedded)} has. Give real checkpoints with --weights PATH.")
    config = PretrainConfig(backbone=backbone)
    path = embedded_weights_path(config)
    if path.is_file() and not force:
        say(f"cached: {path}")
    else:
        path = pretrain(config, show_progress=not quiet)
        meta = json.loads(path.with_suffix(".json").read_text())
        accuracy = ", ".join(f"{k} {v:.1f}%" for k, v in meta["heldout_accuracy"].items())
        say(f"wrote {path} in {meta['train_seconds']} s (held-out accuracy: {accuracy}); "
            f"use it with --weights {path}")
    if ship:
        shipped = ship_weights(path, config)
        say(f"shipped: {shipped} (sha256 {file_sha256(shipped)})")


class ParamsFormat(str, Enum):
    table = "table"
    csv = "csv"
    json = "json"


@app.command("params")
def params_command(
    methods: Annotated[str | None, typer.Option(
        help="comma-separated methods (default: every registered method)")] = None,
    backbone: Annotated[str, typer.Option(help="see 'pebench list backbones'")] = "swin-t",
    dataset: Annotated[str, typer.Option(
        help="a registered dataset, or pascal-context / nyud (no data needed)")]
        = "pascal-context",
    tasks: Annotated[str | None, typer.Option(
        help="comma-separated tasks (default: the dataset's default tasks)")] = None,
    img_size: Annotated[int | None, typer.Option(help="input size (default: dataset's)")] = None,
    format_: Annotated[ParamsFormat, typer.Option(
        "--format", help="table, csv or json")] = ParamsFormat.table,
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="method hyperparameter method.key=value (repeatable)")] = None,
) -> None:
    """Count each method's trainable parameters per group without training (no data needed),
    beside the published count in the published setting."""
    from pebench import accounting, published

    setting = accounting.resolve_setting(backbone, dataset, split_list(tasks), img_size)
    result = accounting.count_methods(
        setting, list(split_list(methods)) if methods is not None else None,
        accounting.parse_method_overrides(set_ or []))
    for line in result.unavailable:
        note(f"not counted: {line}")
    if format_ is ParamsFormat.json:
        print(accounting.to_json(result.rows))
        return
    if format_ is ParamsFormat.csv:
        print(accounting.to_csv(result.rows), end="")
        return
    table = Table(title=f"trainable parameters: {setting.describe()}")
    for index, header in enumerate(accounting.TABLE_HEADERS):
        table.add_column(header, justify="left" if index == 0 else "right")
    for row in result.rows:
        table.add_row(*accounting.table_cells(row))
    print_unelided(table)
    if setting.skipped_tasks:
        console.print(f"not counted (no task registered yet): {', '.join(setting.skipped_tasks)}")
    for row in result.rows:
        if row.note:
            console.print(f"{row.method}: {row.note}", soft_wrap=True, highlight=False)
    where = "the meta device" if all(r.built_on == "meta" for r in result.rows) else "meta/CPU"
    footer = ("published: trainable_params_m of results/reference/"
              f"{published.TABLE_FILE}" if setting.is_published else
              "published: none outside the published setting (swin-t, pascal-context's "
              "four tasks, 448)")
    console.print(f"{footer}; built on {where} in {result.seconds:.2f} s, no weights, "
                  "no data", soft_wrap=True, highlight=False)


class CompareFormat(str, Enum):
    table = "table"
    md = "md"
    csv = "csv"
    latex = "latex"


@app.command("compare")
def compare_command(
    results: Annotated[Path, typer.Option(help="directory of run records (searched recursively)")]
        = Path("results/runs"),
    reference: Annotated[bool, typer.Option(
        "--reference", help="also show the published PASCAL-Context / Swin-T rows")] = False,
    format_: Annotated[CompareFormat, typer.Option(
        "--format", help="table, md, csv or latex (printed to stdout)")] = CompareFormat.table,
    plot: Annotated[Path | None, typer.Option(
        help="also draw Δm against trainable parameters into FILE.png, .svg or .pdf")] = None,
    plot_metric: Annotated[str | None, typer.Option(
        help="plot this task's primary metric instead of Δm")] = None,
    group_by: Annotated[list[str] | None, typer.Option(
        help="extra setting columns to split rows by, e.g. batch_size,lr or method.rank")]
        = None,
) -> None:
    """Table (and figure) of every run in a results directory: one row per method and setting,
    seeds as mean ± std, Δm against single-task runs of the same setting."""
    from pebench.compare import compare, require_rows
    from pebench.report import failed_lines, render

    columns = [c for item in group_by or [] for c in split_list(item) or ()]
    comparison = compare(results, columns, with_published=reference)
    for skipped in comparison.skipped:
        note(f"warning: {skipped.warning()}")
    if not comparison.ours:
        for line in failed_lines(comparison):
            note(f"failed run {line}")
        require_rows(comparison)
    figure = None
    if plot is not None:  # checked before printing, so a bad --plot prints no table
        from pebench.plot import check_path, figure_data

        check_path(plot)
        figure = figure_data(comparison, plot_metric)
    if format_ is CompareFormat.table:
        print_comparison(comparison)
    else:
        sys.stdout.write(render(comparison, format_.value))
        if format_ is not CompareFormat.md:  # CSV and LaTeX stay clean documents on stdout
            for line in comparison.notes:
                note(f"note: {line}")
            for line in failed_lines(comparison):
                note(f"failed run (not averaged in): {line}")
    if figure is not None and plot is not None:
        from pebench.plot import save_figure

        save_figure(figure, plot)
        for left_out in figure.left_out:
            note(f"note: not plotted: {left_out}")
        note(f"figure: {plot}")


data_app = typer.Typer(no_args_is_help=True,
                       help="Check a dataset download, or write a small one in the real format.")
app.add_typer(data_app, name="data")


@data_app.command("check")
def data_check_command(
    dataset: Annotated[str, typer.Option(help="pascal-context or nyud")],
    data_root: Annotated[Path, typer.Option(help="the dataset folder on disk")],
    tasks: Annotated[str | None, typer.Option(
        help="comma-separated tasks (default: every label of the format)")] = None,
    quiet: Annotated[bool, typer.Option(help="no progress bar")] = False,
) -> None:
    """Read every image and label of both splits; exit 1 on any problem.

    Problems are files that are missing or unreadable, labels whose size differs from their
    image's, and labels with values outside the format."""
    from pebench.data.check import check_dataset, problem_lines, summary_table

    report = check_dataset(dataset, data_root, split_list(tasks), show_progress=not quiet)
    print_unelided(summary_table(report))
    for line in report.notes:
        say(f"note: {line}")
    for line in problem_lines(report):
        console.print(line, highlight=False, soft_wrap=True, markup=False)
    if not report.ok:
        count = sum(len(messages) for messages in report.problems.values())
        note(f"error: {count} problem(s) in '{data_root}'; fix or re-extract the files above.")
        raise typer.Exit(1)
    console.print(f"ok: every file of {dataset} in '{data_root}' can be loaded.",
                  highlight=False, soft_wrap=True, markup=False)


@data_app.command("fixture")
def data_fixture_command(
    dataset: Annotated[str, typer.Option(help="pascal-context or nyud")],
    directory: Annotated[Path, typer.Argument(help="a new or empty directory")],
) -> None:
    """Write a small dataset in the real on-disk format, to try the real loaders."""
    from pebench.data.fixtures import write_fixture

    fixture = write_fixture(dataset, directory)
    sizes = ", ".join(f"{len(ids)} {split}" for split, ids in fixture.splits.items())
    console.print(f"wrote a {dataset} fixture ({sizes} images) to {directory}; try: pebench "
                  f"data check --dataset {dataset} --data-root {directory}",
                  highlight=False, soft_wrap=True, markup=False)


def main() -> None:
    """Console entry point: every user-facing failure is one line on stderr, never a traceback
    (set PEBENCH_DEBUG=1 to see the traceback of an unexpected error)."""
    try:
        result = app(standalone_mode=False)
    except PebenchError as exc:
        _fail(str(exc), 2)
    except RunInterrupted as exc:
        note(str(exc))
        sys.exit(signal_exit_code(exc.reason))
    except (typer.Abort, KeyboardInterrupt):
        _fail("interrupted before the state could be saved; a started run is recorded as "
              "failed (or as interrupted, if an earlier state of it is kept).", 130)
    except typer.TyperException as exc:  # command-line usage errors (typer's click)
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        if not message:  # "no arguments, so here is the help": already printed
            sys.exit(0)
        context = getattr(exc, "ctx", None)
        hint = f" (see '{context.command_path} --help')" if context is not None else ""
        _fail(f"{message}{hint}", getattr(exc, "exit_code", 2))
    except Exception as exc:
        if os.environ.get("PEBENCH_DEBUG"):
            raise
        _fail(f"{type(exc).__name__}: {exc} (unexpected; a started run is recorded as failed; "
              "set PEBENCH_DEBUG=1 for the traceback)", 1)
    sys.exit(result if isinstance(result, int) else 0)


def _fail(message: str, code: int) -> None:
    # The message is text, not markup: "pip install -e '.[slurm]'" must keep its brackets.
    errors.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True,
                 markup=True)
    sys.exit(code)
