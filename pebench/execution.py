"""One run from setup to record: build, train (from a saved state when resuming), evaluate,
write. Between any two steps it can save its state and stop on request."""

from __future__ import annotations

import inspect
import resource
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import torch
from torch.utils.data import Dataset

from pebench.checkpoint import TrainingState, save_trainable_checkpoint, trainable_tensors
from pebench.config import RunConfig, method_config
from pebench.data.base import DATASETS, DatasetSource
from pebench.digest import file_sha256
from pebench.distributed import SINGLE, Ranks, agree, gather_objects
from pebench.errors import PebenchError
from pebench.evaluate import Metrics, evaluate, primary_metrics
from pebench.interrupt import RunInterrupted, StopRequest, StopRequested
from pebench.loaders import default_workers, eval_loader, train_loader
from pebench.model import MultiTaskModel, build_model
from pebench.params import count_parameters
from pebench.pretrain import ensure_embedded_weights
from pebench.progress import TrainingProgress
from pebench.results import RunRecord
from pebench.rng import capture_rng, restore_rng, seed_everything
from pebench.run_files import RunFiles
from pebench.task import Task, get_task
from pebench.train import Batch, OptimConfig, Trainer

# A state is also saved when training ends (before the final evaluation) once training has
# taken this long, so that a crash in the evaluation costs no training.
FINAL_STATE_AFTER_S = 60.0


class Execution:
    def __init__(self, config: RunConfig, device: torch.device, record: RunRecord,
                 files: RunFiles, stop: StopRequest, show_progress: bool,
                 state: TrainingState | None = None, weights: Path | None = None,
                 ranks: Ranks = SINGLE) -> None:
        assert config.tasks is not None and config.img_size is not None
        self.config = config
        self.device = device
        self.ranks = ranks
        self.record = record
        self.files = files
        self.stop = stop
        self.show_progress = show_progress and ranks.is_main
        self.state = state
        self.weights = weights
        self.tasks: dict[str, Task] = {name: get_task(name) for name in config.tasks}
        self.saved_step: int | None = state.step if state is not None else None
        self.train_s = state.train_s if state is not None else 0.0  # finished training time
        # Of the training time, what this run's process spent waiting for the next batch:
        # the share a faster input pipeline (more --workers) could take back.
        self.data_s = state.data_s if state is not None else 0.0
        self.training_since: float | None = None  # while this process trains
        self.last_save = time.monotonic()
        self.started = False  # the record says it runs: from then on a failure is recorded

    def run(self) -> None:
        # Set up before the first record: bad input found here (an unreadable weights file,
        # an empty data root) is refused without leaving a failed run behind.
        self._setup()
        self.record.status = "running"
        self._write_record()
        self.started = True
        try:
            self._check_stop()
            trained_s = self._train()
            (final_state,) = agree(self.ranks, trained_s >= FINAL_STATE_AFTER_S
                                   or self.files.state.exists())
            self._save_state_if(final_state)
            self._finish()
        except StopRequested:
            self._interrupted()

    def record_failure(self, error: str, interrupted: bool) -> None:
        """A failure after the start; a kept state makes the run resumable all the same."""
        resumable = self.saved_step is not None and self.files.state.exists()
        self.record.status = "interrupted" if interrupted and resumable else "failed"
        self.record.error = error
        if resumable:
            self.record.steps_done = self.saved_step
            self.record.error += f"; its state at step {self.saved_step} is kept"
        else:
            self.record.resume_command = None
        self._write_record()

    def _write_record(self) -> None:
        if self.ranks.is_main:  # one record per run, however many processes train it
            self.record.write(self.files.out)

    def _setup(self) -> None:
        config, record = self.config, self.record
        source = DATASETS.get(config.dataset)()
        self.info = source.info
        assert config.img_size is not None and config.tasks is not None
        # The data before the weights: its checks are cheap, building embedded weights is not.
        train_set = source.build("train", config.data_root, config.img_size, config.tasks, True)
        val_set = build_validation(source, config)
        _check_batch_fits(config, len(train_set))
        if self.state is None:
            self.weights = resolve_weights(config, self.show_progress)
            record.weights = _describe_weights(config.weights, self.weights)
        steps = config.steps or 0
        if config.epochs is not None:
            steps = config.epochs * (len(train_set) // config.batch_size)
        record.steps = steps

        seed_everything(config.seed)
        self.model: MultiTaskModel = build_model(
            config.method, method_config(config.method, config.method_overrides),
            config.backbone, config.img_size, config.tasks, self.info,
            self.weights).to(self.device)
        record.params = count_parameters(self.model).as_dict()
        optim = OptimConfig(config.lr, config.weight_decay, config.warmup_fraction,
                            config.clip_grad_norm, config.decoder_lr)
        self.trainer = Trainer(self.model, self.tasks, steps, optim, self.device,
                               config.precision, config.compile, self.ranks)
        if self.state is not None:
            self.state.load_model(self.model)
            self.trainer.load_state_dict(self.state.trainer)
            record.eval_history = list(self.state.eval_history)
        workers = (config.workers if config.workers is not None
                   else default_workers(self.device, self.ranks))
        # iter() now, not at the first step: it starts the workers and draws the loader's seed.
        self.batches = self._timed(iter(train_loader(train_set, config.batch_size, config.seed,
                                                     self.trainer.step, workers, self.device,
                                                     self.ranks)))
        self.val_loader = eval_loader(val_set, config.eval_batch_size or config.batch_size,
                                      workers, self.device, self.ranks)
        if self.state is not None:  # after the loader drew its seed, as the first run did
            restore_rng(self.state.rng_of(self.ranks.rank))
        record.runtime = {"device": str(self.device), "processes": self.ranks.world_size,
                          "workers": workers}
        record.steps_done = self.trainer.step
        self._write_record()
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)

    def _timed(self, batches: Iterator[Batch]) -> Iterator[Batch]:
        """``batches``, adding the time each takes to arrive to ``data_s``."""
        asked = time.perf_counter()
        for batch in batches:
            self.data_s += time.perf_counter() - asked
            yield batch
            asked = time.perf_counter()

    def _train(self) -> float:
        """Train to the last step; returns the seconds this process trained."""
        start = self.training_since = time.perf_counter()
        self.last_save = time.monotonic()
        steps = self.trainer.total_steps
        self._periodic_eval(self.trainer.step)  # one a resume may owe (stopped during it)
        with TrainingProgress(self.config.method, steps, enabled=self.show_progress,
                              start_step=self.trainer.step) as progress:
            def on_step(step: int, losses: dict[str, float]) -> None:
                progress.update(step, losses)
                self.record.steps_done = step
                self._periodic_eval(step)
                save, stop = agree(self.ranks, self._checkpoint_due(step), self.stop.requested)
                self._save_state_if(save)
                if stop:
                    self._stop_with_the_others()

            try:
                self.trainer.fit(self.batches, on_step)
            finally:
                self.train_s += time.perf_counter() - start
                self.training_since = None
        return time.perf_counter() - start

    def _finish(self) -> None:
        record = self.record
        start = time.perf_counter()
        metrics = self._evaluate()
        eval_s = time.perf_counter() - start
        steps, train_s = self.trainer.total_steps, self._train_seconds()
        record.metrics = metrics
        record.primary = primary_metrics(metrics, self.tasks)
        record.timing.update({"train_s": round(train_s, 3), "data_s": round(self.data_s, 3),
                              "eval_s": round(eval_s, 3),
                              "train_steps_per_s": round(steps / train_s, 4)
                              if steps and train_s > 0 else 0.0})
        record.peak_memory_mb, record.peak_memory_source = _peak_memory(self.device)
        if self.ranks.is_main:
            save_trainable_checkpoint(self.model, self.files.checkpoint)
        record.checkpoint = self.files.checkpoint.name
        record.status = "completed"
        record.error = record.resume_command = None
        self._write_record()
        if self.ranks.is_main:
            self.files.state.unlink(missing_ok=True)  # a completed run is not resumed

    def _interrupted(self) -> None:
        step = self.trainer.step
        self._save_state_if(True)
        self.record.status = "interrupted"
        self.record.steps_done = step
        self.record.error = (f"interrupted by {self.stop.reason} at step {step} of "
                             f"{self.trainer.total_steps}")
        self.record.timing.update({"train_s": round(self._train_seconds(), 3),
                                   "data_s": round(self.data_s, 3)})
        self._write_record()
        raise RunInterrupted(self.record, self.stop.reason)

    def _evaluate(self) -> Metrics:
        return evaluate(self.model, self.val_loader, self.tasks, self.info, self.device,
                        self.stop, self.config.precision, self.ranks)

    def _train_seconds(self) -> float:
        """Training time over every process that trained this run, up to now."""
        since = self.training_since
        return self.train_s + (time.perf_counter() - since if since is not None else 0.0)

    def _check_stop(self) -> None:
        if agree(self.ranks, self.stop.requested)[0]:
            self._stop_with_the_others()

    def _stop_with_the_others(self) -> None:
        """Stop here: this process was asked to, or another rank of the run was."""
        if not self.stop.requested:
            self.stop.request("a stop request to another process of the run")
        raise StopRequested

    def _periodic_eval(self, step: int) -> None:
        every = self.config.eval_every
        if not (every and step % every == 0 and 0 < step < self.trainer.total_steps):
            return
        if all(entry["step"] != step for entry in self.record.eval_history):
            metrics = self._evaluate()
            self.record.eval_history.append(
                {"step": step, "primary": primary_metrics(metrics, self.tasks)})

    def _checkpoint_due(self, step: int) -> bool:
        by_steps = self.config.checkpoint_every and step % self.config.checkpoint_every == 0
        minutes = self.config.checkpoint_minutes
        by_time = minutes and time.monotonic() - self.last_save >= minutes * 60
        return bool(by_steps or by_time)

    def _save_state_if(self, due: bool) -> None:
        step = self.trainer.step
        if not due or self.saved_step == step:
            return
        rng = gather_objects(self.ranks, capture_rng())  # every rank takes part
        if self.ranks.is_main:
            TrainingState(
                run_id=self.record.run_id, weights_sha256=self.record.weights.get("sha256"),
                step=step, model=trainable_tensors(self.model, every_buffer=True),
                trainer=self.trainer.state_dict(), rng=rng,
                eval_history=list(self.record.eval_history),
                train_s=self._train_seconds(), data_s=self.data_s,
            ).save(self.files.state)
        self.saved_step = step
        self.last_save = time.monotonic()
        # The record says the run is resumable, and from where, even if it is killed next.
        self.record.steps_done = step
        self.record.resume_command = self.files.resume_command(self.ranks.world_size)
        self._write_record()


def resolve_weights(config: RunConfig, show_progress: bool) -> Path | None:
    """The backbone weights file of ``--weights`` (None: random initialisation)."""
    if config.weights == "none":
        return None
    if config.weights == "auto":
        return ensure_embedded_weights(config.backbone, show_progress)
    return Path(config.weights)


def _describe_weights(requested: str, path: Path | None) -> dict[str, object]:
    if path is None:
        return {"source": "none", "path": None, "sha256": None}
    source = "embedded" if requested == "auto" else "file"
    return {"source": source, "path": str(path), "sha256": file_sha256(path)}


def _peak_memory(device: torch.device) -> tuple[float, str]:
    if device.type == "cuda":
        return round(torch.cuda.max_memory_allocated(device) / 2**20, 1), "cuda_max_allocated"
    # ru_maxrss is in KiB on Linux (bytes on macOS): the whole process, pretraining included.
    scale = 1 if sys.platform == "darwin" else 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
    return round(peak / 2**20, 1), "process_max_rss"


def build_validation(source: DatasetSource, config: RunConfig) -> Dataset:
    """The validation split, its labels at the run's evaluation resolution. A plug-in dataset
    whose ``build`` predates ``eval_resolution`` evaluates at the input size only."""
    assert config.img_size is not None and config.tasks is not None
    if config.eval_resolution == "input":
        return source.build("val", config.data_root, config.img_size, config.tasks, False)
    if "eval_resolution" not in inspect.signature(source.build).parameters:
        raise PebenchError(f"dataset '{config.dataset}' cannot keep its labels' original size "
                           "(its build() takes no eval_resolution); use --eval-resolution "
                           "input.")
    return source.build("val", config.data_root, config.img_size, config.tasks, False,
                        eval_resolution=config.eval_resolution)


def _check_batch_fits(config: RunConfig, train_size: int) -> None:
    """A batch no larger than the training split (an empty split file is refused when it is
    read, by ``read_split``)."""
    if config.batch_size > train_size:
        raise PebenchError(f"--batch-size {config.batch_size} exceeds the {train_size} "
                           f"training images of dataset '{config.dataset}'; give at most "
                           f"{train_size}.")
