"""Which task(s) the encoder is computing for, read by task-conditioned modules.

Task-specific encoders (per-task adapters, hypernetwork-generated weights, per-task LoRA) run
in one of two executions that must give the same result:

* loop: the encoder runs once per task on the B images; modules use the active task's weights.
* batched: the encoder runs once on T·B images stacked task-major (all images of task 0,
  then task 1, ...); modules split their input into T groups and apply the T weight sets with
  one batched matmul.

Every leading dimension inside a Swin block (B·H·W tokens, B·windows) stays task-major when
the batch is, so a token-wise module can always reshape its input to (T, -1, C).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


class TaskContext:
    def __init__(self) -> None:
        self.active: int | None = None
        self.num_batched: int | None = None

    @contextmanager
    def single(self, index: int) -> Iterator[None]:
        """Run modules with the weights of task ``index`` only (the loop execution)."""
        previous = (self.active, self.num_batched)
        self.active, self.num_batched = index, None
        try:
            yield
        finally:
            self.active, self.num_batched = previous

    @contextmanager
    def batched(self, num_tasks: int) -> Iterator[None]:
        """Run modules on a task-major stack of ``num_tasks`` groups (the batched execution)."""
        previous = (self.active, self.num_batched)
        self.active, self.num_batched = None, num_tasks
        try:
            yield
        finally:
            self.active, self.num_batched = previous

    def _require_task(self) -> None:
        if self.active is None and self.num_batched is None:
            raise RuntimeError("a task-conditioned module ran outside TaskContext.single/batched; "
                               "the method's encode() must set the task context")

    def linear(self, x: torch.Tensor, weight: torch.Tensor,
               bias: torch.Tensor | None = None) -> torch.Tensor:
        """Apply per-task linear maps: ``weight`` is (T, in, out), ``bias`` is (T, out)."""
        self._require_task()
        if self.num_batched is None:
            index = self.active
            assert index is not None
            out = x @ weight[index]
            return out if bias is None else out + bias[index]
        groups = self.num_batched
        if weight.shape[0] != groups:
            raise RuntimeError(
                f"batched over {groups} tasks but the weights hold {weight.shape[0]}")
        lead = x.shape[:-1]
        grouped = x.reshape(groups, -1, x.shape[-1])
        out = torch.bmm(grouped, weight) if bias is None else torch.baddbmm(
            bias.unsqueeze(1), grouped, weight)
        return out.reshape(*lead, weight.shape[-1])


def split_task_major(x: torch.Tensor, num_tasks: int) -> list[torch.Tensor]:
    """Undo the task-major stacking of a batched pass."""
    return list(x.chunk(num_tasks, dim=0))

