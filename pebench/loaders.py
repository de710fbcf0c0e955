"""The DataLoaders of a run: the endless training stream and the evaluation pass.

Loading runs in ``workers`` background processes when asked (default: by device, below),
with pinned host memory and prefetching on CUDA so that the copy to the GPU overlaps the
step. Neither the number of workers nor the number of data-parallel processes changes a
batch: the stream fixes every sample and its augmentation (pebench.data.stream).
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Subset, default_collate

from pebench.data.stream import BatchIndexStream
from pebench.distributed import SINGLE, Ranks

# Batches each worker loads ahead of the step that needs them.
PREFETCH_FACTOR = 4
MAX_DEFAULT_WORKERS = 8


def default_workers(device: torch.device, ranks: Ranks = SINGLE) -> int:
    """0 on a CPU, where workers take cores from the step itself (measured in the README:
    no gain on 2 cores); on CUDA, this process's share of the CPU cores, one left for the
    training process, at most MAX_DEFAULT_WORKERS."""
    if device.type != "cuda":
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    per_process = (cores or 1) // max(1, min(ranks.world_size, torch.cuda.device_count()))
    return max(0, min(MAX_DEFAULT_WORKERS, per_process - 1))


def _options(workers: int, device: torch.device) -> dict[str, Any]:
    options: dict[str, Any] = {"num_workers": workers, "collate_fn": default_collate,
                               "pin_memory": device.type == "cuda"}
    if workers:
        options.update(persistent_workers=True, prefetch_factor=PREFETCH_FACTOR)
    return options


def train_loader(dataset: Dataset, batch_size: int, seed: int, start_batch: int,
                 workers: int, device: torch.device, ranks: Ranks = SINGLE) -> DataLoader:
    """Global batch ``start_batch`` onwards; each rank loads its share of every batch."""
    stream = BatchIndexStream(len(dataset), batch_size, seed, start_batch, ranks)  # type: ignore[arg-type]
    return DataLoader(dataset, batch_sampler=stream, **_options(workers, device))


def collate_evaluation(samples: list[dict[str, torch.Tensor]]) -> dict[str, Any]:
    """A validation batch as ``default_collate`` makes it, except that targets whose sizes
    differ (labels at their original resolution) stay a list, one tensor per image."""
    batch: dict[str, Any] = {}
    for key in samples[0]:
        values = [sample[key] for sample in samples]
        same = all(value.shape == values[0].shape for value in values)
        batch[key] = default_collate(values) if same else values
    return batch


def eval_loader(dataset: Dataset, batch_size: int, workers: int, device: torch.device,
                ranks: Ranks = SINGLE) -> DataLoader:
    """The whole split in order; under data parallelism rank r evaluates images r, r + N,
    … (no image twice, none padded in), and the meters are summed afterwards."""
    if ranks.distributed:
        size = len(dataset)  # type: ignore[arg-type]
        dataset = Subset(dataset, range(ranks.rank, size, ranks.world_size))
    # Its own generator: evaluating never moves the global one the training draws from, so
    # a resume that repeats an interrupted evaluation trains exactly as the first run did.
    options = {**_options(workers, device), "collate_fn": collate_evaluation}
    return DataLoader(dataset, batch_size=batch_size, shuffle=False,
                      generator=torch.Generator().manual_seed(0), **options)
