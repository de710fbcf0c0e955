"""RunConfig: everything a run depends on, validated before anything is built or written."""

from __future__ import annotations

import dataclasses
import math
import re
import typing
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pebench.defaults import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_CHECKPOINT_MINUTES,
    DEFAULT_LR,
    DEFAULT_STEPS,
    EVAL_RESOLUTIONS,
    PRECISIONS,
)
from pebench.errors import PebenchError, unknown_name
from pebench.settings import with_later_fields

if TYPE_CHECKING:
    from pebench.data.base import DatasetInfo

# This module is imported before anything heavy: the registries (and with them torch and
# timm) are imported inside the functions that need them, so that `precheck` can refuse bad
# input in a fraction of a second.

MAX_SEED = 2**32 - 1  # numpy's seed range
# Upper bounds that catch a typo before it costs an allocation failure or an endless run:
# the published setting trains about 190,000 steps at 448 px.
MAX_STEPS = 10**8
MAX_IMG_SIZE = 2048
DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:\d+)?")


@dataclass
class RunConfig:
    method: str
    tasks: tuple[str, ...] | None = None  # None: the dataset's default tasks
    dataset: str = "synthetic"
    data_root: Path | None = None
    backbone: str = "swin-nano"
    weights: str = "auto"  # "auto" (embedded, if the backbone has them), "none", or a path
    img_size: int | None = None  # None: the dataset's default
    steps: int | None = None  # None: DEFAULT_STEPS unless epochs is given
    epochs: int | None = None
    batch_size: int = DEFAULT_BATCH_SIZE
    eval_batch_size: int | None = None  # None: batch_size
    lr: float | None = None  # None: the method's default_lr, else DEFAULT_LR
    decoder_lr: float | None = None  # None: the method's decoder_lr, else lr
    weight_decay: float = 0.05
    warmup_fraction: float = 0.05
    clip_grad_norm: float = 5.0
    eval_every: int = 0  # evaluate every N steps as well as at the end; 0 = only at the end
    # "input": the meters see labels at the input size; "original": predictions are resized
    # to each label's own size (pebench.defaults.EVAL_RESOLUTIONS).
    eval_resolution: str = "input"
    seed: int = 0
    device: str = "auto"
    out: Path = Path("results/runs")
    method_overrides: dict[str, str] = field(default_factory=dict)
    # When to save the resumable training state (besides interrupts): every N steps (0: not by
    # steps) and every M minutes of training (0: not by time). Neither changes the results.
    checkpoint_every: int = 0
    checkpoint_minutes: float = DEFAULT_CHECKPOINT_MINUTES
    precision: str = "fp32"  # fp32, or autocast to bf16 / fp16 (pebench.precision)
    compile: bool = False  # torch.compile the forward pass
    # DataLoader worker processes for the training and evaluation data (None: by device,
    # see pebench.loaders). Batches do not depend on it.
    workers: int | None = None

    @classmethod
    def from_record(cls, config: dict[str, Any]) -> RunConfig:
        """The config a run record stores (``RunRecord.config``), as a RunConfig again."""
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in with_later_fields(config).items() if k in known}
        values["tasks"] = tuple(values["tasks"]) if values.get("tasks") is not None else None
        for key in ("data_root", "out"):
            if values.get(key) is not None:
                values[key] = Path(values[key])
        return cls(**values)

    def precheck(self) -> None:
        """What can be checked without importing torch, in a fraction of a second: every
        number and choice, and the names, tasks, input size and ``--set`` keys against the
        catalog of the registries (:mod:`pebench.catalog`). ``resolved`` checks the same
        against the registries themselves, and what needs them or the disk."""
        from pebench.catalog import catalog

        listed = {kind: {e["name"]: e for e in entries} for kind, entries in catalog().items()}
        _check_name("method", self.method, listed["methods"])
        _check_name("dataset", self.dataset, listed["datasets"])
        _check_name("backbone", self.backbone, listed["backbones"])
        dataset = listed["datasets"][self.dataset]
        tasks = self._chosen_tasks(dataset["tasks"], dataset["default_tasks"])
        check_task_names(self.dataset, dataset["tasks"], listed["tasks"], tasks)
        img_size = self.img_size if self.img_size is not None else dataset["default_img_size"]
        check_img_size_for(self.backbone, img_size,
                           listed["backbones"][self.backbone]["patch_size"])
        _check_option_keys(self.method, self.method_overrides,
                           [o["key"] for o in listed["methods"][self.method]["options"]])
        self._check_numbers()

    def resolved(self) -> RunConfig:
        """Validate every field and fill the defaults that depend on the dataset or the
        method; raises PebenchError with one line for the first problem found."""
        from pebench.backbones import BACKBONES
        from pebench.data.base import DATASETS
        from pebench.method import METHODS

        _check_name("method", self.method, METHODS.names())
        _check_name("dataset", self.dataset, DATASETS.names())
        _check_name("backbone", self.backbone, BACKBONES.names())
        info = DATASETS.get(self.dataset).info
        tasks = self._chosen_tasks(info.tasks, info.default_tasks)
        check_tasks(info, tasks)
        data_root = self.data_root
        if info.needs_root:
            if data_root is None:
                raise PebenchError(f"dataset '{self.dataset}' needs --data-root pointing at its "
                                   "folder on disk (pebench never downloads it).")
            if not data_root.is_dir():
                raise PebenchError(f"--data-root '{data_root}' is not a directory.")
        spec = BACKBONES.get(self.backbone)
        if self.weights == "auto" and not spec.embedded_weights:
            raise PebenchError(f"backbone '{self.backbone}' has no embedded weights: give "
                               "--weights PATH to a local ImageNet checkpoint (timm or original "
                               "Swin format), or --weights none for a random initialisation.")
        if self.weights not in ("auto", "none") and not Path(self.weights).is_file():
            raise PebenchError(f"--weights '{self.weights}' is not a file. Give a local "
                               "checkpoint path, 'auto' or 'none'.")
        img_size = info.default_img_size if self.img_size is None else self.img_size
        check_img_size(self.backbone, img_size)
        self._check_numbers()
        method = METHODS.get(self.method)
        lr = self.lr if self.lr is not None else method.default_lr or DEFAULT_LR
        decoder_lr = self.decoder_lr if self.decoder_lr is not None else method.decoder_lr or lr
        steps = self.steps if self.steps is not None or self.epochs is not None else DEFAULT_STEPS
        method_config(self.method, self.method_overrides)  # fails early on a bad --set
        return dataclasses.replace(self, tasks=tuple(tasks), img_size=img_size, steps=steps,
                                   lr=lr, decoder_lr=decoder_lr)

    def _chosen_tasks(self, offered: Sequence[str],
                      defaults: Sequence[str]) -> tuple[str, ...]:
        if self.tasks is not None and not self.tasks:
            raise PebenchError("--tasks names no task; give a comma-separated list of: "
                               f"{', '.join(offered)} (or leave it out for the defaults).")
        return tuple(self.tasks or defaults)

    def _check_numbers(self) -> None:
        """Every number and choice that needs no registry."""
        if self.steps is not None and self.epochs is not None:
            raise PebenchError("give either --steps or --epochs, not both.")
        _at_least("--steps", self.steps, 0)
        if self.steps is not None and self.steps > MAX_STEPS:
            raise PebenchError(f"--steps must be ≤ {MAX_STEPS:,}, got {self.steps:,}.")
        _at_least("--epochs", self.epochs, 1)
        _at_least("--batch-size", self.batch_size, 1)
        _at_least("--eval-batch-size", self.eval_batch_size, 1)
        _at_least("--eval-every", self.eval_every, 0)
        _at_least("--checkpoint-every", self.checkpoint_every, 0)
        _at_least("--workers", self.workers, 0)
        if self.precision not in PRECISIONS:
            raise PebenchError(f"unknown --precision '{self.precision}'; valid: "
                               f"{', '.join(PRECISIONS)}.")
        _at_least("--seed", self.seed, 0)
        if self.seed > MAX_SEED:
            raise PebenchError(f"--seed must be ≤ {MAX_SEED} (numpy's seed range), "
                               f"got {self.seed}.")
        for flag, rate in (("--lr", self.lr), ("--decoder-lr", self.decoder_lr)):
            if rate is not None and not (rate > 0 and math.isfinite(rate)):
                raise PebenchError(f"{flag} must be a finite positive number, got {rate}.")
        if not (self.checkpoint_minutes >= 0 and math.isfinite(self.checkpoint_minutes)):
            raise PebenchError("--checkpoint-minutes must be a finite number ≥ 0, got "
                               f"{self.checkpoint_minutes}.")
        if not 0 <= self.warmup_fraction < 1:
            raise PebenchError(
                f"the warm-up fraction must be in [0, 1), got {self.warmup_fraction}.")
        if self.eval_resolution not in EVAL_RESOLUTIONS:
            raise PebenchError(f"unknown --eval-resolution '{self.eval_resolution}'; valid: "
                               f"{', '.join(EVAL_RESOLUTIONS)}.")
        if not DEVICE_PATTERN.fullmatch(self.device):
            raise PebenchError(f"unknown --device '{self.device}'; valid: auto, cpu, cuda, cuda:N.")


def _check_name(kind: str, name: str, valid: Iterable[str]) -> None:
    valid = list(valid)
    if name not in valid:
        raise unknown_name(kind, name, valid, f"Run 'pebench list {kind}s' to see them.")


def check_tasks(info: DatasetInfo, tasks: tuple[str, ...]) -> None:
    """Every task registered, offered by the dataset, and listed once."""
    from pebench.task import TASKS

    check_task_names(info.name, info.tasks, TASKS.names(), tasks)


def check_task_names(dataset: str, offered: Iterable[str], registered: Iterable[str],
                     tasks: tuple[str, ...]) -> None:
    """``check_tasks`` from the names alone (the registry's or the catalog's)."""
    offered, registered = list(offered), sorted(registered)
    for task in tasks:
        if task not in registered:
            if task in offered:
                raise PebenchError(f"task '{task}' of dataset '{dataset}' is not implemented "
                                   f"yet; registered tasks: {', '.join(registered)}.")
            raise unknown_name("task", task, registered)
        if task not in offered:
            raise PebenchError(f"dataset '{dataset}' has no labels for task '{task}'; "
                               f"it offers: {', '.join(offered)}.")
    if len(set(tasks)) != len(tasks):
        raise PebenchError(f"a task is listed twice in --tasks {','.join(tasks)}.")


def check_img_size(backbone: str, img_size: int) -> None:
    from pebench.backbones import BACKBONES

    check_img_size_for(backbone, img_size, BACKBONES.get(backbone).patch_size)


def check_img_size_for(backbone: str, img_size: int, patch: int) -> None:
    if not 32 <= img_size <= MAX_IMG_SIZE or img_size % patch != 0:
        raise PebenchError(f"--img-size {img_size} is not valid for {backbone}: it must be a "
                           f"multiple of the patch size {patch} from 32 to {MAX_IMG_SIZE}.")


def _at_least(flag: str, value: int | None, minimum: int) -> None:
    if value is not None and value < minimum:
        raise PebenchError(f"{flag} must be ≥ {minimum}, got {value}.")


def parse_overrides(items: list[str]) -> dict[str, str]:
    """``["rank=8", "targets=attn.qkv,mlp.fc1"]`` → ``{"rank": "8", ...}``."""
    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise PebenchError(f"--set '{item}' is not of the form key=value.")
        overrides[key.strip()] = value.strip()
    return overrides


def method_config(method: str, overrides: dict[str, str]) -> Any:
    """The method's Config dataclass with ``--set`` overrides applied and type-checked."""
    from pebench.method import METHODS

    config_cls = METHODS.get(method).Config
    hints = typing.get_type_hints(config_cls)
    _check_option_keys(method, overrides, [f.name for f in dataclasses.fields(config_cls)])
    values = {key: _coerce(method, key, raw, hints[key]) for key, raw in overrides.items()}
    try:
        return config_cls(**values)
    except (ValueError, TypeError) as exc:
        raise PebenchError(f"invalid hyperparameters for '{method}': {exc}") from exc


def _check_option_keys(method: str, overrides: dict[str, str], keys: list[str]) -> None:
    for key in overrides:
        if key not in keys:
            valid = ", ".join(sorted(keys)) or "none (this method has no hyperparameters)"
            raise PebenchError(f"method '{method}' has no hyperparameter '{key}'; valid: {valid} "
                               "(see 'pebench list methods --verbose').")


def _coerce(method: str, key: str, raw: str, kind: Any) -> Any:
    origin = typing.get_origin(kind)
    args = typing.get_args(kind)
    try:
        if origin is typing.Literal:
            choices = [str(a) for a in args]
            if raw not in choices:
                raise ValueError(f"choose one of {', '.join(choices)}")
            return args[choices.index(raw)]
        if origin is tuple:
            item_kind = args[0] if args else str
            return tuple(_coerce(method, key, part.strip(), item_kind)
                         for part in raw.split(",") if part.strip())
        if kind is bool:
            lowered = raw.lower()
            if lowered not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError("expected true or false")
            return lowered in ("true", "1", "yes")
        if kind is float:
            value = float(raw)
            if not math.isfinite(value):
                raise ValueError("expected a finite number")
            return value
        if kind in (int, str):
            return kind(raw)
    except ValueError as exc:
        raise PebenchError(f"--set {key}={raw} for '{method}': {exc}.") from exc
    raise PebenchError(f"--set {key}: hyperparameters of type {kind} cannot be set from the "
                       "command line.")
