"""A resumable, seeded stream of training batches, the same whatever reads it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import torch
from torch.utils.data import Sampler

from pebench.distributed import SINGLE, Ranks


class Draw(NamedTuple):
    """One training sample to load: dataset ``index`` and the seed of its random
    augmentation, a function of the run's seed and the sample's place in the stream."""

    index: int
    seed: int


def unpack(item: int | Draw) -> tuple[int, int | None]:
    """A dataset's ``__getitem__`` argument as (index, augmentation seed or None): training
    loaders ask for Draws, evaluation loaders for plain indices."""
    if isinstance(item, tuple):
        return item[0], item[1]
    return int(item), None


class BatchIndexStream(Sampler[list[Draw]]):
    """Batch k holds positions [k·B, (k+1)·B) of an endless sequence made of one seeded
    permutation of the dataset per epoch, so any batch is a pure function of (seed, k): the
    stream resumes exactly from a step count. Each position also carries its own
    augmentation seed, so what a sample looks like does not depend on which DataLoader
    worker (or which process of a data-parallel run) loads it. Under data parallelism each
    rank takes its contiguous share of the global batch B."""

    def __init__(self, dataset_size: int, batch_size: int, seed: int, start_batch: int = 0,
                 ranks: Ranks = SINGLE) -> None:
        if dataset_size < 1:
            raise ValueError("cannot stream batches from an empty dataset")
        self.dataset_size = dataset_size
        self.batch_size = batch_size
        self.seed = seed
        self.start_batch = start_batch
        self.ranks = ranks
        self._epoch = -1
        self._permutation: list[int] = []

    def _index_at(self, position: int) -> int:
        epoch, offset = divmod(position, self.dataset_size)
        if epoch != self._epoch:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._permutation = torch.randperm(self.dataset_size, generator=generator).tolist()
            self._epoch = epoch
        return self._permutation[offset]

    def _draw_seed(self, position: int) -> int:
        # Distinct for every (seed, position) pair; 2**62 keeps it within numpy's seed range.
        return (self.seed * 1_000_000_007 + position) % 2**62

    def batch(self, k: int) -> list[Draw]:
        """This rank's share of global batch k."""
        start = k * self.batch_size
        positions = self.ranks.share(list(range(start, start + self.batch_size)))
        return [Draw(self._index_at(p), self._draw_seed(p)) for p in positions]

    def __iter__(self) -> Iterator[list[Draw]]:
        k = self.start_batch
        while True:
            yield self.batch(k)
            k += 1
