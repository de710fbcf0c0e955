"""The Python front door: ``run(config) -> RunRecord``. The CLI is a thin layer over this."""

from __future__ import annotations

import dataclasses
import hashlib
import resource
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, default_collate

from pebench.config import RunConfig, method_config
from pebench.data.base import DATASETS
from pebench.data.stream import BatchIndexStream
from pebench.errors import PebenchError
from pebench.evaluate import Metrics, evaluate, primary_metrics
from pebench.model import build_model
from pebench.params import count_parameters
from pebench.pretrain import ensure_embedded_weights
from pebench.progress import TrainingProgress
from pebench.reference import find_delta_m_reference
from pebench.results import (
    RunRecord,
    git_commit,
    new_run_id,
    now_iso,
    save_trainable_checkpoint,
    software_versions,
)
from pebench.task import get_task
from pebench.train import OptimConfig, Trainer


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise PebenchError(f"--device {name} was asked for but CUDA is not available here; "
                           "use --device cpu or auto.")
    return torch.device(name)


def run(config: RunConfig, show_progress: bool = True) -> RunRecord:
    """Validate, build, train, evaluate and record one run.

    Invalid settings raise PebenchError before anything is written. Once the run has
    started, any failure (including Ctrl-C) is recorded as ``status: failed`` with its error
    and then re-raised.
    """
    config = config.resolved()
    device = resolve_device(config.device)
    _check_method_fits(config)
    record = RunRecord(
        run_id=new_run_id(config.method, config.dataset, config.backbone, config.seed),
        created_at=now_iso(), method=config.method,
        method_config=dataclasses.asdict(method_config(config.method, config.method_overrides)),
        tasks=list(config.tasks), dataset=config.dataset, backbone=config.backbone,
        img_size=config.img_size, seed=config.seed, steps=0,
        config=_jsonable(dataclasses.asdict(config)), versions=software_versions(),
        git_commit=git_commit(),
    )
    try:
        _execute(config, device, record, show_progress)
    except BaseException as exc:
        record.status = "failed"
        record.error = _describe(exc)
        record.write(config.out)
        raise
    return record


def _check_method_fits(config: RunConfig) -> None:
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


def _execute(config: RunConfig, device: torch.device, record: RunRecord,
             show_progress: bool) -> None:
    assert config.tasks is not None and config.img_size is not None and config.steps is not None
    source = DATASETS.get(config.dataset)()
    info = source.info
    tasks = {name: get_task(name) for name in config.tasks}

    weights_path = _weights_path(config, show_progress)
    record.weights = _describe_weights(config.weights, weights_path)

    train_set = source.build("train", config.data_root, config.img_size, config.tasks, True)
    val_set = source.build("val", config.data_root, config.img_size, config.tasks, False)
    steps = config.steps
    if config.epochs is not None:
        steps = config.epochs * (len(train_set) // config.batch_size)
    record.steps = steps

    _seed_everything(config.seed)
    model = build_model(config.method, method_config(config.method, config.method_overrides),
                        config.backbone, config.img_size, config.tasks, info,
                        weights_path).to(device)
    record.params = count_parameters(model).as_dict()

    optim = OptimConfig(config.lr, config.weight_decay, config.warmup_fraction,
                        config.clip_grad_norm)
    trainer = Trainer(model, tasks, steps, optim, device)
    batches = iter(_train_loader(train_set, config))
    val_loader = _eval_loader(val_set, config)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    def periodic_eval(step: int) -> None:
        if config.eval_every and step % config.eval_every == 0 and step < steps:
            metrics = evaluate(model, val_loader, tasks, info, device)
            record.eval_history.append({"step": step, "primary": primary_metrics(metrics, tasks)})

    start = time.perf_counter()
    with TrainingProgress(config.method, steps, enabled=show_progress) as progress:
        def on_step(step: int, losses: dict[str, float]) -> None:
            progress.update(step, losses)
            periodic_eval(step)

        trainer.fit(batches, steps, on_step)
    train_s = time.perf_counter() - start

    start = time.perf_counter()
    metrics: Metrics = evaluate(model, val_loader, tasks, info, device)
    eval_s = time.perf_counter() - start

    record.metrics = metrics
    record.primary = primary_metrics(metrics, tasks)
    record.timing.update({"train_s": round(train_s, 3), "eval_s": round(eval_s, 3),
                          "train_steps_per_s": round(steps / train_s, 4) if steps else 0.0})
    record.peak_memory_mb, record.peak_memory_source = _peak_memory(device)
    reference = find_delta_m_reference(record, config.out, tasks)
    if reference is not None:
        record.delta_m, record.delta_m_reference = reference.delta_m, reference.describe()
    checkpoint = config.out / f"{record.run_id}.safetensors"
    save_trainable_checkpoint(model, checkpoint)
    record.checkpoint = checkpoint.name
    record.status = "completed"
    record.write(config.out)


def _weights_path(config: RunConfig, show_progress: bool) -> Path | None:
    if config.weights == "none":
        return None
    if config.weights == "auto":
        return ensure_embedded_weights(config.backbone, show_progress)
    return Path(config.weights)


def _describe_weights(requested: str, path: Path | None) -> dict[str, object]:
    if path is None:
        return {"source": "none", "path": None, "sha256": None}
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    source = "embedded" if requested == "auto" else "file"
    return {"source": source, "path": str(path), "sha256": digest}


def _train_loader(dataset: Dataset, config: RunConfig) -> DataLoader:
    stream = BatchIndexStream(len(dataset), config.batch_size, config.seed)
    return DataLoader(dataset, batch_sampler=stream, collate_fn=default_collate)


def _eval_loader(dataset: Dataset, config: RunConfig) -> DataLoader:
    return DataLoader(dataset, batch_size=config.eval_batch_size or config.batch_size,
                      shuffle=False, collate_fn=default_collate)


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)


def _peak_memory(device: torch.device) -> tuple[float, str]:
    if device.type == "cuda":
        return round(torch.cuda.max_memory_allocated(device) / 2**20, 1), "cuda_max_allocated"
    # ru_maxrss is in KiB on Linux (bytes on macOS): the whole process, pretraining included.
    scale = 1 if sys.platform == "darwin" else 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
    return round(peak / 2**20, 1), "process_max_rss"


def _describe(exc: BaseException) -> str:
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted by the user"
    if isinstance(exc, PebenchError):
        return str(exc)
    frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    where = f" (at {Path(frame.filename).name}:{frame.lineno})" if frame else ""
    return f"{type(exc).__name__}: {exc}{where}"


def _jsonable(value: object) -> object:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value
