"""A resumable, seeded stream of training batches."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class BatchIndexStream(Sampler[list[int]]):
    """Batch k holds positions [k·B, (k+1)·B) of an endless sequence made of one seeded
    permutation of the dataset per epoch, so any batch is a pure function of (seed, k): the
    stream resumes exactly from a step count, whatever the number of loader workers."""

    def __init__(self, dataset_size: int, batch_size: int, seed: int, start_batch: int = 0) -> None:
        if dataset_size < 1:
            raise ValueError("cannot stream batches from an empty dataset")
        self.dataset_size = dataset_size
        self.batch_size = batch_size
        self.seed = seed
        self.start_batch = start_batch
        self._epoch = -1
        self._permutation: list[int] = []

    def _index_at(self, position: int) -> int:
        epoch, offset = divmod(position, self.dataset_size)
        if epoch != self._epoch:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._permutation = torch.randperm(self.dataset_size, generator=generator).tolist()
            self._epoch = epoch
        return self._permutation[offset]

    def batch(self, k: int) -> list[int]:
        start = k * self.batch_size
        return [self._index_at(p) for p in range(start, start + self.batch_size)]

    def __iter__(self) -> Iterator[list[int]]:
        k = self.start_batch
        while True:
            yield self.batch(k)
            k += 1
