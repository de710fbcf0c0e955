"""The task interface: what a dense prediction task declares to the harness.

Batch conventions (every dataset produces these, every task consumes them):

===============  ==================  ======================================================
task             target tensor       meaning
===============  ==================  ======================================================
semseg           int64  (B, H, W)    class id; 255 = ignore
human_parts      int64  (B, H, W)    0 = background, 1..P = part; 255 = ignore (all 255 in
                                     images without a person, as in PASCAL-Context)
saliency         int64  (B, H, W)    1 = salient, 0 = not; 255 = ignore
normals          float32 (B, 3, H, W) unit surface normal (x right, y down, z towards the
                                     camera); the zero vector = ignore
depth            float32 (B, 1, H, W) metric depth; 0 = invalid
edge             int64  (B, H, W)    1 = edge, 0 = not; 255 = ignore
===============  ==================  ======================================================

Decoders emit raw outputs (logits for classification tasks). ``Task.loss`` takes those raw
outputs; ``Task.predict`` maps them once to what the meter consumes (class ids,
probabilities, unit normals), so a sigmoid or a softmax is never applied twice.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, ClassVar, Protocol

import torch
from torch.nn import functional as F

from pebench.registry import Registry

if TYPE_CHECKING:
    from pebench.data.base import DatasetInfo

IGNORE_INDEX = 255


class Meter(Protocol):
    """Accumulates over a whole split; ``compute`` returns every metric of the task.

    ``accumulators`` names the attributes (tensors, ints or floats) that are sums over the
    split's images: a data-parallel evaluation sums them across processes before
    ``compute``, so the meter must hold nothing else that depends on the images."""

    accumulators: tuple[str, ...]

    def update(self, prediction: torch.Tensor, target: torch.Tensor) -> None: ...

    def compute(self) -> dict[str, float]: ...


class Task(ABC):
    """A dense prediction task: output channels, loss, evaluation meter, Δm direction."""

    name: ClassVar[str]
    description: ClassVar[str]
    loss_weight: ClassVar[float]
    primary_metric: ClassVar[str]
    higher_is_better: ClassVar[bool]

    @abstractmethod
    def out_channels(self, info: DatasetInfo) -> int:
        """Number of decoder output channels on this dataset."""

    @abstractmethod
    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Scalar loss of raw decoder output against the target (unweighted)."""

    @abstractmethod
    def predict(self, output: torch.Tensor) -> torch.Tensor:
        """Map raw decoder output to what the meter consumes."""

    @abstractmethod
    def meter(self, info: DatasetInfo) -> Meter:
        """A fresh meter for one evaluation pass."""

    def resize_prediction(self, prediction: torch.Tensor,
                          size: tuple[int, int]) -> torch.Tensor:
        """A prediction (what ``predict`` returns) at another size, for evaluation at each
        label's own resolution, as the Multi-Task-Learning-PyTorch protocol resizes its
        predictions (OpenCV): class ids (integer, (B, H, W)) by the nearest pixel (OpenCV's
        INTER_NEAREST: source pixel floor(x · scale)), values ((B, C, H, W)) bilinearly with
        pixel centres aligned (INTER_LINEAR). A task whose prediction has a constraint that
        interpolation breaks (unit normals) overrides this."""
        if not prediction.is_floating_point():
            resized = F.interpolate(prediction[:, None].float(), size=size, mode="nearest")
            return resized[:, 0].to(prediction.dtype)
        return F.interpolate(prediction, size=size, mode="bilinear", align_corners=False)


def loss_precision(values: torch.Tensor) -> torch.Tensor:
    """Half-precision outputs in float32 for a loss (sums over a batch would be too coarse
    in 16 bits, as autocast would decide too); float32 and float64 stay as they are."""
    return values.float() if values.element_size() < 4 else values


def check_same_shape(task: str, output: torch.Tensor, target: torch.Tensor) -> None:
    """Refuse mismatched loss inputs: torch.where would broadcast (B, 1, H, W) against
    (B, H, W) into a silently wrong loss."""
    if output.shape != target.shape:
        raise ValueError(f"{task} loss: output {tuple(output.shape)} does not match the target "
                         f"{tuple(target.shape)}.")


TASKS: Registry[type[Task]] = Registry("task", builtin_modules=("tasks",),
                                      entry_point_group="pebench.tasks")


def register_task(cls: type[Task]) -> type[Task]:
    """Class decorator: register a task under its ``name``."""
    TASKS.add(cls.name, cls, cls.description)
    return cls


def get_task(name: str) -> Task:
    return TASKS.get(name)()
