"""MultiTaskModel: encoder adapted by a method, plus one decoder per task."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from pebench.backbones import BACKBONES, SwinEncoder
from pebench.data.base import DatasetInfo
from pebench.decoders import HRNetHead
from pebench.method import METHODS, Method
from pebench.task import get_task
from pebench.weights import load_backbone_weights


class MultiTaskModel(nn.Module):
    def __init__(self, encoder: SwinEncoder, method: Method,
                 out_channels: dict[str, int]) -> None:
        super().__init__()
        if tuple(out_channels) != method.tasks:
            raise ValueError(f"decoder tasks {tuple(out_channels)} differ from the method's "
                             f"{method.tasks}")
        tap_channels = encoder.tap_channels
        widths = encoder.spec.decoder_widths
        encoder.requires_grad_(False)
        self.encoder = method.attach(encoder)
        self.method = method
        self.decoders = nn.ModuleDict(
            {task: HRNetHead(tap_channels, channels, widths)
             for task, channels in out_channels.items()}
        )

    @property
    def tasks(self) -> tuple[str, ...]:
        return self.method.tasks

    def prepare(self) -> None:
        self.method.prepare()

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Raw decoder outputs at the input resolution. Call ``prepare()`` first."""
        features = self.method.encode(self.encoder, images)
        size = (images.shape[-2], images.shape[-1])
        return {task: self.decoders[task](features[task], size) for task in self.tasks}

    def parameter_sets(self) -> list[list[nn.Parameter]]:
        """Trainable parameters split into sets whose gradients are clipped independently.

        One set for a multi-task model; one set per task (its encoder and its decoder) when
        the method trains tasks independently.
        """
        if not self.method.independent_tasks:
            return [[p for p in self.parameters() if p.requires_grad]]
        sets = []
        for index, task in enumerate(self.tasks):
            owned = list(self.method.task_parameters(self.encoder, index))
            owned += list(self.decoders[task].parameters())
            sets.append([p for p in owned if p.requires_grad])
        return sets


def build_model(method: str, config: Any, backbone: str, img_size: int,
                tasks: tuple[str, ...], info: DatasetInfo,
                weights: Path | None = None) -> MultiTaskModel:
    """The one way a model is assembled: encoder (with ``weights`` if given), the method
    attached to it, one decoder per task. Build under ``torch.device("meta")`` to count
    parameters without allocating them."""
    encoder = SwinEncoder(BACKBONES.get(backbone), img_size)
    if weights is not None:
        load_backbone_weights(encoder, weights)
    out_channels = {name: get_task(name).out_channels(info) for name in tasks}
    return MultiTaskModel(encoder, METHODS.get(method)(config, tasks), out_channels)
