"""``pebench bench``: where a training step's time goes, method by method, in one process.

Every method is measured on the same batch of the embedded dataset with the run's own
:class:`~pebench.train.Trainer` (forward, backward, gradient clipping, fused AdamW), after
warm-up steps, as the median of repeated steps, so the figures are what ``pebench run``
spends per step minus the data loading (``--data`` measures that alone). Absolute times
differ between machines several-fold; the ratios measured in one run do not, which is why
every row is also given against two floors measured beside it:

* the **frozen-backbone floor** (the method whose ``bench_baseline`` is "frozen-backbone",
  ``decoder-only``): the frozen encoder's forward pass, the
  decoders' forward and backward and their update; a method that trains anything inside the
  encoder must also backpropagate through it;
* the **backprop floor**: the same frozen model, but with the backward pass carried through
  the whole frozen encoder to the image, as it must be for any method that trains a
  parameter in the encoder's first block; what such a method adds beyond it is its own cost;
* **full fine-tuning** (``bench_baseline`` "full-fine-tuning", ``mtl-full``): what parameter
  efficiency is measured against.

Two cores drift by tens of percent over minutes, so the floors are measured before and
after the methods and each ratio uses the mean of the two.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils.data import default_collate

from pebench.config import method_config
from pebench.data.base import DATASETS
from pebench.errors import PebenchError
from pebench.method import METHODS, BenchBaseline
from pebench.model import MultiTaskModel, build_model
from pebench.params import count_parameters
from pebench.precision import autocast
from pebench.task import get_task
from pebench.train import Batch, OptimConfig, Trainer

BACKPROP_FLOOR = "backprop floor"
BENCH_DATASET = "synthetic"  # the step's cost depends on shapes, not on what the images show
# Any finite schedule will do: the step's cost does not depend on the learning rate.
_OPTIM = OptimConfig(lr=1e-4, weight_decay=0.05, warmup_fraction=0.0, clip_grad_norm=5.0)


@dataclass(frozen=True)
class BenchSetting:
    backbone: str = "swin-nano"
    img_size: int = 96
    batch_size: int = 8
    tasks: tuple[str, ...] = field(
        default_factory=lambda: DATASETS.get(BENCH_DATASET).info.default_tasks)
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    precision: str = "fp32"
    warmup: int = 3
    repeats: int = 10


@dataclass(frozen=True)
class Variant:
    """A row of the table: a method with hyperparameter overrides."""

    label: str
    method: str
    overrides: dict[str, str] = field(default_factory=dict)


@dataclass
class Row:
    label: str
    method: str
    trainable: int
    step_ms: float
    samples_per_s: float
    eval_images_per_s: float
    prepare_share: float | None  # of a step; None: the method generates nothing
    saved_mb: float  # activations autograd keeps for the backward pass
    peak_mb: float | None  # CUDA only: the step's peak allocation
    task_shared: bool  # one set of encoder features serves every task
    # Task-specific methods: the step in both executions (one of them is step_ms, the default)
    execution: str | None = None
    loop_ms: float | None = None
    batched_ms: float | None = None
    vs_floor: float | None = None
    vs_backprop_floor: float | None = None
    vs_full: float | None = None

    @property
    def loop_over_batched(self) -> float | None:
        if self.loop_ms is None or self.batched_ms is None:
            return None
        return self.loop_ms / self.batched_ms


def baseline(role: BenchBaseline) -> str:
    """The registered method that is the ``role`` baseline (``Method.bench_baseline``)."""
    names = [e.name for e in METHODS.entries() if e.obj.bench_baseline == role]
    if len(names) != 1:
        raise PebenchError(f"pebench bench needs exactly one method whose bench_baseline is "
                           f"'{role}'; found {', '.join(names) or 'none'}.")
    return names[0]


def variants(methods: list[str]) -> list[Variant]:
    """Each method at its defaults; a method whose encoder is task-specific by default but
    can share it (``--set shared=true``) also shared, the Polyhistor benchmark's two rows."""
    rows = []
    for name in methods:
        rows.append(Variant(name, name))
        fields = {f.name: f for f in dataclasses.fields(METHODS.get(name).Config)}
        if "shared" in fields and fields["shared"].default is False:
            rows.append(Variant(f"{name} (shared)", name, {"shared": "true"}))
    return rows


def bench_batch(setting: BenchSetting) -> Batch:
    source = DATASETS.get(BENCH_DATASET)()
    split = source.build("train", None, setting.img_size, setting.tasks, True)
    return default_collate([split[i] for i in range(setting.batch_size)])


def _prepared(variant: Variant, setting: BenchSetting, batch: Batch,
              backprop: bool) -> tuple[Any, MultiTaskModel, Batch]:
    """The variant's config, its model and the batch on the device; ``backprop``: the image
    needs a gradient (a new tensor object: the caller's batch stays without one)."""
    torch.manual_seed(0)
    info = DATASETS.get(BENCH_DATASET).info
    config = method_config(variant.method, variant.overrides)
    model = build_model(variant.method, config, setting.backbone, setting.img_size,
                        setting.tasks, info).to(setting.device)
    batch = {k: v.to(setting.device) for k, v in batch.items()}
    if backprop:
        batch["image"] = batch["image"].detach().requires_grad_(True)
    return config, model, batch


def training_step_ms(variant: Variant, setting: BenchSetting, batch: Batch,
            backprop: bool = False) -> float:
    """The median training step alone (the floors' second measurement)."""
    _, model, batch = _prepared(variant, setting, batch, backprop)
    return _median_ms(lambda: _train_step(model, setting, batch), setting)


def measure(variant: Variant, setting: BenchSetting, batch: Batch,
            backprop: bool = False) -> Row:
    """One row; ``backprop``: gradients flow back to the image (the backprop floor)."""
    device = setting.device
    config, model, batch = _prepared(variant, setting, batch, backprop)
    info = DATASETS.get(BENCH_DATASET).info
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    step_ms = _median_ms(lambda: _train_step(model, setting, batch), setting)
    peak = (round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
            if device.type == "cuda" else None)
    prepare_ms = (_median_ms(lambda: _prepare_forward_backward(model, setting), setting)
                  if _generated_slots(model) else None)
    eval_ms = _median_ms(lambda: _eval_forward(model, setting, batch["image"]), setting)
    execution = getattr(config, "execution", None) if model.method.task_specific_encoder else None
    steps = {}
    if execution is not None:  # the other execution, on a model of its own
        other = "loop" if execution == "batched" else "batched"
        overrides = {**variant.overrides, "execution": other}
        other_model = build_model(variant.method, method_config(variant.method, overrides),
                                  setting.backbone, setting.img_size, setting.tasks,
                                  info).to(device)
        steps = {execution: step_ms,
                 other: _median_ms(lambda: _train_step(other_model, setting, batch), setting)}
    return Row(label=variant.label, method=variant.method,
               trainable=count_parameters(model).trainable, step_ms=step_ms,
               samples_per_s=setting.batch_size / step_ms * 1e3,
               eval_images_per_s=setting.batch_size / eval_ms * 1e3,
               prepare_share=None if prepare_ms is None else prepare_ms / step_ms,
               saved_mb=_saved_for_backward_mb(model, setting, batch), peak_mb=peak,
               task_shared=not model.method.task_specific_encoder, execution=execution,
               loop_ms=steps.get("loop"), batched_ms=steps.get("batched"))


def bench(setting: BenchSetting, methods: list[str],
          on_row: Callable[[Row], None] | None = None) -> list[Row]:
    """The three floors, then every variant of ``methods`` with its ratios to them; the
    floors are measured again at the end and their rows and ratios use both."""
    batch = bench_batch(setting)
    floor, full = baseline("frozen-backbone"), baseline("full-fine-tuning")
    floors = {floor: Variant(floor, floor), BACKPROP_FLOOR: Variant(BACKPROP_FLOOR, floor),
              full: Variant(full, full)}
    before = {name: measure(v, setting, batch, backprop=name == BACKPROP_FLOOR)
              for name, v in floors.items()}
    rows = [before[BACKPROP_FLOOR]]
    for variant in variants(methods):
        row = before.get(variant.label) or measure(variant, setting, batch)
        rows.append(row)
        if on_row is not None:
            on_row(row)
    for name, row in before.items():  # the floors' steps again: the mean of both ends
        again = training_step_ms(floors[name], setting, batch, backprop=name == BACKPROP_FLOOR)
        row.step_ms = (row.step_ms + again) / 2
        row.samples_per_s = setting.batch_size / row.step_ms * 1e3
    for row in rows:
        row.vs_floor = row.step_ms / before[floor].step_ms
        row.vs_backprop_floor = row.step_ms / before[BACKPROP_FLOOR].step_ms
        row.vs_full = row.step_ms / before[full].step_ms
    return rows


def _train_step(model: MultiTaskModel, setting: BenchSetting, batch: Batch) -> Iterator[None]:
    """A generator that runs one training step per ``next``, with one trainer throughout."""
    tasks = {name: get_task(name) for name in setting.tasks}
    trainer = Trainer(model, tasks, 10**9, _OPTIM, setting.device, setting.precision)
    while True:
        trainer.train_step(batch)
        yield


def _eval_forward(model: MultiTaskModel, setting: BenchSetting,
                  images: torch.Tensor) -> Iterator[None]:
    model.eval()
    with torch.no_grad(), autocast(setting.precision, setting.device):
        model.prepare()
        while True:
            model(images)
            yield


def _prepare_forward_backward(model: MultiTaskModel, setting: BenchSetting) -> Iterator[None]:
    """prepare() and the backward pass from what it generated into the hypernetworks: the
    part of a step that does not depend on the images."""
    slots = _generated_slots(model)
    while True:
        with autocast(setting.precision, setting.device):
            model.prepare()
        generated = [t for module, name in slots for t in _tensors(getattr(module, name))]
        # Expanded ones: gradients that cost no memory to fill, so that the figure is the
        # method's work alone (in a step the adapters' backward hands these gradients over).
        torch.autograd.backward(generated, [torch.ones((), dtype=t.dtype, device=t.device)
                                            .expand_as(t) for t in generated])
        model.zero_grad(set_to_none=True)
        yield


def _generated_slots(model: MultiTaskModel) -> list[tuple[torch.nn.Module, str]]:
    """The module attributes prepare() fills with tensors autograd can differentiate
    (generated weights are computed, not parameters): those it replaces on every call."""
    model.train()
    model.prepare()
    before = {(id(m), n): v for m in model.modules() for n, v in vars(m).items()}
    model.prepare()
    return [(m, n) for m in model.modules() for n, v in vars(m).items()
            if v is not before.get((id(m), n))
            and any(t.grad_fn is not None for t in _tensors(v))]


def _tensors(value: object) -> list[torch.Tensor]:
    """The tensors in a value, a tensor or (nested) tuples and lists of them."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        return [t for item in value for t in _tensors(item)]
    return []


def _saved_for_backward_mb(model: MultiTaskModel, setting: BenchSetting, batch: Batch) -> float:
    """MiB of distinct storages autograd saves for the backward pass of one training
    forward: the activation memory a method adds, on any device."""
    storages: dict[tuple[Any, int], int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        storages[(tensor.device, storage.data_ptr())] = storage.nbytes()
        return tensor

    tasks = {name: get_task(name) for name in setting.tasks}
    model.train()
    with (torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t),
          autocast(setting.precision, setting.device)):
        model.prepare()
        outputs = model(batch["image"])
        losses = [task.loss(outputs[name], batch[name]) for name, task in tasks.items()]
    del losses, outputs
    return round(sum(storages.values()) / 2**20, 1)


def _median_ms(make: Callable[[], Iterator[None]], setting: BenchSetting) -> float:
    """Median milliseconds of ``repeats`` iterations of ``make()`` after ``warmup``."""
    iterator = make()
    times = []
    for index in range(setting.warmup + setting.repeats):
        _synchronize(setting.device)
        start = time.perf_counter()
        next(iterator)
        _synchronize(setting.device)
        if index >= setting.warmup:
            times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
