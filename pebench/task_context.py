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

from collections.abc import Callable, Iterator
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

    def linear(self, x: torch.Tensor, weight: torch.Tensor,
               bias: torch.Tensor | None = None) -> torch.Tensor:
        """Apply per-task linear maps: ``weight`` is (T, in, out), ``bias`` is (T, out).

        A leading dimension of 1 means one map shared by every task: it applies to the whole
        input whatever the context, so a module can hold either shared or per-task weights.
        """
        weight = self.sets_for_input(weight)
        bias = None if bias is None else self.sets_for_input(bias)
        if weight.shape[0] == 1:
            out = x @ weight[0]
            return out if bias is None else out + bias[0]
        groups = weight.shape[0]
        lead = x.shape[:-1]
        grouped = x.reshape(groups, -1, x.shape[-1])
        out = torch.bmm(grouped, weight) if bias is None else torch.baddbmm(
            bias.unsqueeze(1), grouped, weight)
        return out.reshape(*lead, weight.shape[-1])

    def sets_for_input(self, weights: torch.Tensor) -> torch.Tensor:
        """The weight sets (sets, ...) the input uses, the set dimension kept: the one shared
        set, or the active task's in the loop; all T sets, one per task-major group of the
        input, in a task-batched pass."""
        if weights.shape[0] == 1:
            return weights
        index = self._task_index()
        if index is not None:
            return weights[index:index + 1]
        self._groups(weights.shape[0])
        return weights

    def add(self, x: torch.Tensor, vectors: torch.Tensor, channel_dim: int = -1) -> torch.Tensor:
        """Add per-task vectors (T, C) along ``channel_dim`` of ``x``; T = 1 is shared, as in
        :meth:`linear`."""
        return self._per_task(torch.add, x, vectors, channel_dim)

    def mul(self, x: torch.Tensor, vectors: torch.Tensor, channel_dim: int = -1) -> torch.Tensor:
        """Scale ``x`` by per-task vectors (T, C) along ``channel_dim``."""
        return self._per_task(torch.mul, x, vectors, channel_dim)

    def _per_task(self, op: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                  x: torch.Tensor, vectors: torch.Tensor, channel_dim: int) -> torch.Tensor:
        """``op(x, v)`` with v the task's (or the shared) vector along ``channel_dim``. In a
        task-batched pass ``x`` is viewed as (T, B, ...) so that each task-major group meets
        its own vector by broadcasting, without copying the vectors once per row."""
        channel_dim = channel_dim % x.dim()
        trailing = [1] * (x.dim() - channel_dim - 1)
        vectors = self.sets_for_input(vectors)
        if vectors.shape[0] == 1:
            return op(x, vectors[0].view(-1, *trailing))
        if channel_dim == 0:
            raise ValueError("per-task vectors cannot run along the task-major batch dimension")
        groups = vectors.shape[0]
        grouped = x.reshape(groups, -1, *x.shape[1:])
        shape = (groups, 1, *([1] * (channel_dim - 1)), vectors.shape[1], *trailing)
        return op(grouped, vectors.view(shape)).reshape(x.shape)

    def _task_index(self) -> int | None:
        """The active task in the loop execution, None in a task-batched pass."""
        if self.active is None and self.num_batched is None:
            raise RuntimeError("a task-conditioned module ran outside TaskContext.single/batched; "
                               "the method's encode() must set the task context")
        return self.active

    def _groups(self, num_sets: int) -> int:
        groups = self.num_batched
        assert groups is not None
        if num_sets != groups:
            raise RuntimeError(f"batched over {groups} tasks but the weights hold {num_sets}")
        return groups


def split_task_major(x: torch.Tensor, num_tasks: int) -> list[torch.Tensor]:
    """Undo the task-major stacking of a batched pass."""
    return list(x.chunk(num_tasks, dim=0))

