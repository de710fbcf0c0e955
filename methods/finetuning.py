"""The full fine-tuning baselines of the benchmark: single-task, multi-task, decoders only."""

from __future__ import annotations

import copy
from collections.abc import Iterator

import torch
from torch import nn

from pebench.defaults import PEFT_LR
from pebench.method import Method, TaskFeatures, register_method
from pebench.params import ENCODER_TASK_SPECIFIC


class PerTaskEncoders(nn.ModuleList):
    """One complete encoder per task; every parameter in it belongs to one task."""

    param_group = ENCODER_TASK_SPECIFIC


@register_method
class SingleTask(Method):
    """One fully fine-tuned encoder and decoder per task: the Δm reference of the benchmark.

    The T models are trained in one run with one data stream, but share nothing: each task's
    gradients are clipped on their own (``independent_tasks``) and AdamW is per-parameter, so
    each model follows exactly the updates it would get in a run of its own with the same
    batches. The encoders run one after the other (there is no task-batched pass across
    separate networks).
    """

    name = "single-task"
    description = "one fully fine-tuned encoder and decoder per task (the Δm reference)"
    published_name = "Single-task full fine-tuning"
    delta_m_reference = True
    task_specific_encoder = True
    independent_tasks = True

    def attach(self, encoder: nn.Module) -> nn.Module:
        encoder.requires_grad_(True)
        copies = [copy.deepcopy(encoder) for _ in self.tasks[1:]]
        return PerTaskEncoders([encoder, *copies])

    def encode(self, encoder: nn.Module, images: torch.Tensor) -> TaskFeatures:
        return {task: model(images) for task, model in zip(self.tasks, encoder, strict=True)}

    def task_parameters(self, encoder: nn.Module, index: int) -> Iterator[nn.Parameter]:
        return encoder[index].parameters()


@register_method
class MultiTaskFull(Method):
    """One shared encoder, fully fine-tuned, with a decoder per task."""

    name = "mtl-full"
    description = "shared encoder fully fine-tuned, one decoder per task"
    published_name = "Multi-task full fine-tuning"
    bench_baseline = "full-fine-tuning"

    def attach(self, encoder: nn.Module) -> nn.Module:
        encoder.requires_grad_(True)
        return encoder


@register_method
class DecoderOnly(Method):
    """The pretrained encoder stays frozen; only the per-task decoders train."""

    name = "decoder-only"
    description = "frozen encoder, only the per-task decoders train"
    published_name = "Fine-tuning decoders only"
    bench_baseline = "frozen-backbone"
    # The parameter-efficient methods' rate: their decoders train as the frozen backbone's do.
    default_lr = PEFT_LR

    def attach(self, encoder: nn.Module) -> nn.Module:
        return encoder
