"""Data-parallel runs under torchrun: the process group, and the few collectives a run needs.

``torchrun --nproc_per_node N -m pebench run ...`` starts N copies of pebench with RANK,
WORLD_SIZE and LOCAL_RANK set; each joins one process group (nccl on CUDA, gloo on CPU),
trains its share of every global batch under DistributedDataParallel, evaluates its share of
the validation split, and the meters are summed across ranks. Rank 0 alone writes the record,
the state and the checkpoint, and shows progress. A single process (no WORLD_SIZE, or 1) uses
none of this.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist

from pebench.errors import PebenchError


@dataclass(frozen=True)
class Ranks:
    """Where this process stands in the run: rank ``rank`` of ``world_size``."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def share(self, items: list[int]) -> list[int]:
        """This rank's contiguous share of a global batch, whose size the world divides."""
        size = len(items) // self.world_size
        return items[self.rank * size:(self.rank + 1) * size]


SINGLE = Ranks()


def ranks_from_environment() -> Ranks:
    """The ranks torchrun set (SINGLE without it)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return SINGLE
    return Ranks(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))


@contextlib.contextmanager
def joined(ranks: Ranks, device: torch.device) -> Iterator[torch.device]:
    """Inside, this process is in the process group of its torchrun run (nothing to join
    alone); yields its device: cuda:LOCAL_RANK on CUDA, so N processes on a node use N GPUs."""
    if not ranks.distributed:
        yield device
        return
    if device.type == "cuda":
        if torch.cuda.device_count() <= ranks.local_rank:
            raise PebenchError(f"rank {ranks.rank} has LOCAL_RANK {ranks.local_rank} but this "
                               f"node has {torch.cuda.device_count()} GPU(s); start at most "
                               "that many processes per node (--nproc_per_node).")
        device = torch.device("cuda", ranks.local_rank)
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        yield device
    finally:
        dist.destroy_process_group()


def check_divides(ranks: Ranks, batch_size: int) -> None:
    if batch_size % ranks.world_size:
        raise PebenchError(f"--batch-size {batch_size} is the global batch and must split evenly "
                           f"over the {ranks.world_size} processes; give a multiple of "
                           f"{ranks.world_size}.")


def sum_across(ranks: Ranks, values: torch.Tensor) -> torch.Tensor:
    """The elementwise sum of ``values`` over every rank (``values`` itself when alone)."""
    if not ranks.distributed:
        return values
    home = values.device
    if dist.get_backend() == "nccl" and values.device.type != "cuda":
        values = values.cuda()
    dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values.to(home)


def agree(ranks: Ranks, *flags: bool) -> tuple[bool, ...]:
    """Each flag true on every rank when it is true on any, in one reduction: ranks that
    decide alone (a stop request, a checkpoint due by the clock) act at the same step."""
    if not ranks.distributed:
        return flags
    counts = sum_across(ranks, torch.tensor([float(flag) for flag in flags]))
    return tuple(bool(count > 0) for count in counts.tolist())


def gather_objects(ranks: Ranks, value: object) -> list[object]:
    """``value`` of every rank, in rank order (a list of one when alone)."""
    if not ranks.distributed:
        return [value]
    gathered: list[object] = [None] * ranks.world_size
    dist.all_gather_object(gathered, value)
    return gathered


def broadcast_object(ranks: Ranks, value: object) -> object:
    """Rank 0's ``value`` on every rank."""
    if not ranks.distributed:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def sum_meter(ranks: Ranks, meter: object) -> None:
    """Sum a meter's ``accumulators`` over every rank, in place: each rank evaluated its own
    share of the split, and the sums of counts are the counts of the whole split (averaging
    per-rank ratios would not be)."""
    if not ranks.distributed:
        return
    names = getattr(meter, "accumulators", None)
    if names is None:
        raise PebenchError(f"{type(meter).__name__} does not name its accumulators, so its "
                           "counts cannot be summed across processes; give it an "
                           "`accumulators` tuple (see pebench.task.Meter) or run in one process.")
    for name in names:
        value = getattr(meter, name)
        if isinstance(value, torch.Tensor):
            setattr(meter, name, sum_across(ranks, value))
        else:  # a Python int or float: exact in int64 / float64
            dtype = torch.int64 if isinstance(value, int) else torch.float64
            total = sum_across(ranks, torch.tensor([value], dtype=dtype))
            setattr(meter, name, type(value)(total.item()))
