"""The model, the method interface, the three fine-tuning baselines and parameter groups."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from method_testing import assert_loop_and_batched_agree, train_step
from torch import nn

from pebench.backbones import BACKBONES, SwinEncoder
from pebench.method import METHODS, Method
from pebench.model import MultiTaskModel
from pebench.params import ENCODER_TASK_SPECIFIC, count_parameters
from pebench.task_context import TaskContext

PASCAL_OUTPUTS = {"semseg": 21, "human_parts": 7, "saliency": 1, "normals": 3}
NANO_OUTPUTS = {"semseg": 7, "human_parts": 7, "saliency": 1, "normals": 3}


def build(method: str, outputs: dict[str, int] = NANO_OUTPUTS, backbone: str = "swin-nano",
          img_size: int = 64, method_cls: type[Method] | None = None) -> MultiTaskModel:
    torch.manual_seed(0)
    encoder = SwinEncoder(BACKBONES.get(backbone), img_size)
    cls = method_cls or METHODS.get(method)
    return MultiTaskModel(encoder, cls(cls.Config(), tuple(outputs)), outputs)


def test_published_decoder_count_on_swin_t() -> None:
    counts = count_parameters(build("decoder-only", PASCAL_OUTPUTS, "swin-t", 224))
    assert counts.decoders == 1_946_624
    assert counts.trainable == 1_946_624
    assert counts.encoder_shared == counts.encoder_task_specific == counts.other == 0
    assert counts.total == 1_946_624 + 27_517_818


def test_baseline_groups_on_swin_t() -> None:
    mtl = count_parameters(build("mtl-full", PASCAL_OUTPUTS, "swin-t", 224))
    assert mtl.encoder_shared == 27_517_818
    assert mtl.trainable == 27_517_818 + 1_946_624
    single = count_parameters(build("single-task", PASCAL_OUTPUTS, "swin-t", 224))
    assert single.encoder_task_specific == 4 * 27_517_818
    assert single.encoder_shared == 0
    assert single.trainable == single.total == 4 * 27_517_818 + 1_946_624


def _train_steps(model: MultiTaskModel, steps: int = 2) -> None:
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(steps):
        train_step(model, torch.randn(2, 3, 64, 64), optimizer)


def test_decoder_only_leaves_the_encoder_bit_identical() -> None:
    model = build("decoder-only")
    before = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    decoders_before = {k: v.clone() for k, v in model.decoders.state_dict().items()}
    _train_steps(model)
    for key, value in model.encoder.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert any(not torch.equal(v, decoders_before[k])
               for k, v in model.decoders.state_dict().items())


def test_single_task_encoders_are_independent_copies() -> None:
    model = build("single-task")
    first, second = model.encoder[0], model.encoder[1]
    assert first is not second
    for a, b in zip(first.parameters(), second.parameters(), strict=True):
        assert a.data_ptr() != b.data_ptr()
        assert torch.equal(a, b)
    # A loss on one task's output moves only that task's encoder.
    model.prepare()
    out = model(torch.randn(2, 3, 64, 64))
    out["semseg"].square().mean().backward()
    assert all(p.grad is not None for p in model.encoder[0].parameters())
    assert all(p.grad is None for p in model.encoder[1].parameters())
    sets = model.parameter_sets()
    assert len(sets) == 4
    assert sum(p.numel() for s in sets for p in s) == count_parameters(model).trainable


class PerTaskScale(nn.Module):
    """A test method's module: a per-task linear map on the MLP branch (identity at init)."""

    param_group = ENCODER_TASK_SPECIFIC

    def __init__(self, context: TaskContext, num_tasks: int, dim: int) -> None:
        super().__init__()
        self.context = context
        self.weight = nn.Parameter(torch.eye(dim).repeat(num_tasks, 1, 1)
                                   + 0.1 * torch.randn(num_tasks, dim, dim))
        self.bias = nn.Parameter(0.1 * torch.randn(num_tasks, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.context.linear(x, self.weight, self.bias)


@dataclass
class PerTaskConfig:
    execution: str = "batched"


class PerTaskMethod(Method):
    name = "test-per-task"
    description = "test only"
    Config = PerTaskConfig
    task_specific_encoder = True

    def attach(self, encoder: nn.Module) -> nn.Module:
        for site in encoder.blocks():
            site.add_after_mlp(PerTaskScale(encoder.task_context, len(self.tasks), site.dim))
            site.add_after_attention(
                PerTaskScale(encoder.task_context, len(self.tasks), site.dim))
        return encoder


def test_loop_and_task_batched_executions_agree() -> None:
    model = build("", method_cls=PerTaskMethod)
    assert_loop_and_batched_agree(model, NANO_OUTPUTS)
    counts = count_parameters(model)
    assert counts.encoder_task_specific == sum(
        4 * 2 * (s.dim * s.dim + s.dim) for s in model.encoder.blocks())


def test_task_module_outside_a_task_context_is_an_error() -> None:
    module = PerTaskScale(TaskContext(), 2, 4)
    with pytest.raises(RuntimeError, match="outside TaskContext"):
        module(torch.randn(3, 4))
