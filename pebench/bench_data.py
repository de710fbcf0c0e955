"""``pebench bench --data``: the input pipeline alone, as the training loop reads it.

For each number of DataLoader workers, training batches of the dataset's real loader
(decoding, augmentation, resize, collation) are drawn from the run's own stream and loader
(:func:`pebench.loaders.train_loader`) after the workers have started and delivered a
first batch; the images per second say whether N workers can keep a step of a given
duration fed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch

from pebench.data.base import DATASETS
from pebench.loaders import train_loader


@dataclass(frozen=True)
class DataRow:
    workers: int
    batches: int
    seconds: float

    def images_per_s(self, batch_size: int) -> float:
        return self.batches * batch_size / self.seconds


def bench_data(dataset: str, root: Path | None, img_size: int, tasks: tuple[str, ...],
               batch_size: int, workers: list[int], batches: int,
               device: torch.device) -> list[DataRow]:
    split = DATASETS.get(dataset)().build("train", root, img_size, tasks, True)
    rows = []
    for count in workers:
        loader = train_loader(split, batch_size, seed=0, start_batch=0, workers=count,
                              device=device)
        iterator = iter(loader)
        next(iterator)  # workers started, first batch delivered
        start = time.perf_counter()
        for _ in range(batches):
            next(iterator)
        rows.append(DataRow(count, batches, time.perf_counter() - start))
        del iterator, loader  # stop this setting's workers before the next starts
    return rows
