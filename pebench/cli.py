"""The ``pebench`` command line: parses flags, calls pebench.api, prints with rich."""

from __future__ import annotations

import os
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from pebench.config import DEFAULT_BATCH_SIZE, DEFAULT_LR, DEFAULT_STEPS, RunConfig
from pebench.errors import PebenchError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Parameter-efficient multi-task dense prediction benchmark.")
console = Console()
errors = Console(stderr=True)


class Listing(str, Enum):
    methods = "methods"
    tasks = "tasks"
    datasets = "datasets"
    backbones = "backbones"


@app.command("run")
def run_command(
    method: Annotated[str, typer.Option(help="registered method, see 'pebench list methods'")],
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
    lr: Annotated[float, typer.Option(help="peak learning rate (AdamW)")] = DEFAULT_LR,
    seed: Annotated[int, typer.Option(help="seed of initialisation and data order")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N")] = "auto",
    out: Annotated[Path, typer.Option(help="directory for the run record")] = Path("results/runs"),
    eval_every: Annotated[int, typer.Option(help="also evaluate every N steps (0: end only)")] = 0,
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="method hyperparameter key=value (repeatable)")] = None,
    quiet: Annotated[bool, typer.Option(help="no progress bar")] = False,
) -> None:
    """Train and evaluate one method; writes a run record (JSON) and a checkpoint."""
    from pebench.api import run
    from pebench.config import parse_overrides

    config = RunConfig(
        method=method, tasks=_split(tasks), dataset=dataset, data_root=data_root,
        backbone=backbone, weights=weights, img_size=img_size, steps=steps, epochs=epochs,
        batch_size=batch_size, lr=lr, seed=seed, device=device, out=out, eval_every=eval_every,
        method_overrides=parse_overrides(set_ or []),
    )
    record = run(config, show_progress=not quiet)
    table = Table(title=f"{record.method} on {record.dataset} ({record.backbone}, "
                        f"{record.steps} steps, seed {record.seed})")
    table.add_column("task")
    table.add_column("primary metric")
    table.add_column("value", justify="right")
    from pebench.task import get_task

    for name, value in record.primary.items():
        task = get_task(name)
        arrow = "↑" if task.higher_is_better else "↓"
        table.add_row(name, f"{task.primary_metric} {arrow}", f"{value:.2f}")
    console.print(table)
    params = record.params
    console.print(f"trainable parameters: {params['trainable']:,} of {params['total']:,}   "
                  f"train {record.timing['train_s']:.1f} s, eval {record.timing['eval_s']:.1f} s")
    if record.delta_m is not None:
        console.print(f"Δm vs single-task: {record.delta_m:+.2f}%")
    console.print(f"record: {out / (record.run_id + '.json')}", soft_wrap=True)


@app.command("list")
def list_command(
    what: Annotated[Listing | None, typer.Argument(help="what to list (default: all)")] = None,
) -> None:
    """List registered methods, tasks, datasets and backbones."""
    from pebench.backbones import BACKBONES
    from pebench.data.base import DATASETS
    from pebench.method import METHODS
    from pebench.task import TASKS

    registries = {Listing.methods: METHODS, Listing.tasks: TASKS, Listing.datasets: DATASETS,
                  Listing.backbones: BACKBONES}
    for kind, registry in registries.items():
        if what is not None and kind != what:
            continue
        table = Table(title=kind.value, show_header=False, title_justify="left")
        table.add_column("name", style="bold")
        table.add_column("description")
        for entry in registry.entries():
            table.add_row(entry.name, entry.description)
        console.print(table)


@app.command("pretrain")
def pretrain_command(
    backbone: Annotated[str, typer.Option(help="backbone with embedded weights")] = "swin-nano",
    force: Annotated[bool, typer.Option(help="rebuild even if cached")] = False,
    quiet: Annotated[bool, typer.Option(help="no progress bar")] = False,
) -> None:
    """Build the embedded backbone weights (synthetic pretext task) into the user cache."""
    import json

    from pebench.backbones import BACKBONES
    from pebench.pretrain import PretrainConfig, embedded_weights_path, pretrain

    if not BACKBONES.get(backbone).embedded_weights:
        embedded = [e.name for e in BACKBONES.entries() if e.obj.embedded_weights]
        raise PebenchError(f"backbone '{backbone}' has no embedded pretext weights; only "
                           f"{', '.join(embedded)} has. Give real checkpoints with --weights PATH.")
    config = PretrainConfig(backbone=backbone)
    path = embedded_weights_path(config)
    if path.is_file() and not force:
        console.print(f"cached: {path}")
        return
    path = pretrain(config, show_progress=not quiet)
    meta = json.loads(path.with_suffix(".json").read_text())
    accuracy = ", ".join(f"{k} {v:.1f}%" for k, v in meta["heldout_accuracy"].items())
    console.print(f"wrote {path} in {meta['train_seconds']} s (held-out accuracy: {accuracy})")


def _split(value: str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    return tuple(part.strip() for part in value.split(",") if part.strip())


def main() -> None:
    """Console entry point: every user-facing failure is one line on stderr, never a traceback
    (set PEBENCH_DEBUG=1 to see the traceback of an unexpected error)."""
    try:
        result = app(standalone_mode=False)
    except PebenchError as exc:
        _fail(str(exc), 2)
    except typer.Abort:
        _fail("interrupted; a started run is recorded as failed.", 130)
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
    errors.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True, markup=True)
    sys.exit(code)
