"""The method interface: how a parameter-efficient method plugs into the harness.

A method is an ``nn.Module`` with a hyperparameter dataclass ``Config`` and a few hooks:

* ``attach(encoder)``: insert modules through the encoder's block surface and mark what
  trains. The harness freezes the whole encoder before calling it; new modules train unless
  the method says otherwise. Returns the module the model uses as its encoder (normally the
  one it was given).
* ``prepare()``: called once per training step before the forward pass, and once before an
  evaluation pass: hypernetworks emit all (task, layer) weights here, never per sample.
* ``encode(encoder, images)``: per-task feature taps. The default runs a task-shared encoder
  once, or a task-specific one either per task (``execution="loop"``) or as one task-batched
  pass (``execution="batched"``); both give the same result.

Methods must not keep references to the encoder as attributes (that would register it twice);
``encode`` receives it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from pebench.defaults import PEFT_LR
from pebench.options import option
from pebench.registry import Registry
from pebench.task_context import TaskContext, split_task_major

Execution = Literal["batched", "loop"]
TaskFeatures = dict[str, list[torch.Tensor]]


BenchBaseline = Literal["frozen-backbone", "full-fine-tuning"]


@dataclass
class NoConfig:
    """This method has no hyperparameters."""


class Method(nn.Module):
    name: ClassVar[str]
    description: ClassVar[str]
    Config: ClassVar[type] = NoConfig
    # True when no parameter serves two tasks (single-task learning): the trainer then clips
    # gradients per task so that one task's gradients never rescale another's.
    independent_tasks: ClassVar[bool] = False
    # The row of the published reference table (results/reference, column ``method``) that this
    # method reproduces with its default Config, if any: `pebench params` compares counts (see
    # ``published_row``).
    published_name: ClassVar[str | None] = None
    # True for the method whose runs are the Δm reference of the runs of their setting (the
    # single-task models); a run records it (``RunRecord.delta_m_reference_run``).
    delta_m_reference: ClassVar[bool] = False
    # The baseline this method is in ``pebench bench``'s ratios, if any: "frozen-backbone"
    # (nothing in the encoder trains) or "full-fine-tuning" (the shared encoder trains whole);
    # one registered method plays each.
    bench_baseline: ClassVar[BenchBaseline | None] = None
    # The method's own peak learning rate, where its authors' recipe sets one that the
    # harness default (pebench.defaults.DEFAULT_LR) would break or its family trains at
    # another (pebench.defaults.PEFT_LR); --lr overrides it and the run records the rate it
    # trained with.
    default_lr: ClassVar[float | None] = None
    # The task decoders' peak learning rate where it differs from the method's (None: the
    # method's): a method whose own rate is low for what it trains (a hypernetwork) would
    # otherwise leave its decoders behind the frozen backbone's, and its gain over the frozen
    # backbone would be a decoder rate, not its encoder. --decoder-lr overrides it; the run
    # records the rate its decoders trained with.
    decoder_lr: ClassVar[float | None] = None

    def __init__(self, config: Any, tasks: tuple[str, ...]) -> None:
        super().__init__()
        self.config = config
        self.tasks = tasks

    @classmethod
    def published_row(cls, config: Any) -> str | None:
        """The published row that ``config`` reproduces: ``published_name`` with the default
        Config. A method with several published rows (one per setting) overrides this."""
        return cls.published_name if config == cls.Config() else None

    def attach(self, encoder: nn.Module) -> nn.Module:
        raise NotImplementedError

    def task_parameters(self, encoder: nn.Module, index: int) -> Iterator[nn.Parameter]:
        """The encoder parameters of task ``index``; required when ``independent_tasks``."""
        raise NotImplementedError(f"{type(self).__name__} trains tasks independently but does "
                                  "not say which parameters belong to which task")

    def prepare(self) -> None:
        """Once per step (and once per evaluation): generate weights that depend on no input."""

    @property
    def task_specific_encoder(self) -> bool:
        """True when the encoder computes different features per task. Methods fixed either
        way override it with a class attribute; methods with a ``shared`` option, a property."""
        return False

    @property
    def execution(self) -> Execution:
        return getattr(self.config, "execution", "batched")

    def encode(self, encoder: nn.Module, images: torch.Tensor) -> TaskFeatures:
        if not self.task_specific_encoder:
            taps = encoder(images)
            return dict.fromkeys(self.tasks, taps)
        num_tasks = len(self.tasks)
        return per_task(encoder.task_context, self.tasks, self.execution, lambda task: encoder(
            images if task is not None else images.repeat(num_tasks, 1, 1, 1)))


def per_task(context: TaskContext, tasks: tuple[str, ...], execution: Execution,
             run: Callable[[int | None], list[torch.Tensor]]) -> TaskFeatures:
    """The loop / task-batched scaffolding, written once: ``run(index)`` computes the taps of
    task ``index`` under ``context.single(index)`` for each task (loop), or ``run(None)``
    those of every task at once, stacked task-major, under ``context.batched`` (batched)."""
    if execution == "loop":
        features = {}
        for index, task in enumerate(tasks):
            with context.single(index):
                features[task] = run(index)
        return features
    with context.batched(len(tasks)):
        return split_task_features(run(None), tasks)


def split_task_features(taps: list[torch.Tensor], tasks: tuple[str, ...]) -> TaskFeatures:
    """The taps of a task-batched pass (each stacked task-major) as each task's own taps."""
    per_tap = [split_task_major(tap, len(tasks)) for tap in taps]
    return {task: [chunks[i] for chunks in per_tap] for i, task in enumerate(tasks)}


@dataclass
class SharingConfig:
    """The options of every method whose encoder parameters can be per task or shared."""

    shared: bool = option(False, "one set of the method's encoder parameters trained by "
                                 "all tasks (the encoder runs once), not one set per task")
    execution: Execution = option("batched", "per-task encoders: one task-batched pass "
                                             "(batched) or one pass per task (loop); same "
                                             "results")


class SharableMethod(Method):
    """A method whose encoder parameters are one set per task by default, one shared set with
    ``--set shared=true``. Its Config derives from SharingConfig."""

    Config: ClassVar[type] = SharingConfig
    # Every sharable method is a parameter-efficient one (BitFit, LoRA, the adapters, the PHM
    # family, VPT).
    default_lr = PEFT_LR

    @property
    def task_specific_encoder(self) -> bool:
        return not self.config.shared

    @property
    def num_sets(self) -> int:
        """How many weight sets each adapted layer holds: 1 shared, or one per task."""
        return 1 if self.config.shared else len(self.tasks)


METHODS: Registry[type[Method]] = Registry(
    "method", builtin_modules=("methods",), entry_point_group="pebench.methods"
)


def register_method(cls: type[Method]) -> type[Method]:
    """Class decorator: register a method under its ``name``."""
    METHODS.add(cls.name, cls, cls.description)
    return cls
