"""The per-task HRNet-style head of the published protocol.

Each tap gets a bias-free 1×1 projection to 18/36/72/144 channels (HRNet-W18 widths); the
projections are upsampled to the finest tap, concatenated (270 channels), mixed by a 1×1
convolution to 4×270 channels, BatchNorm and ReLU, mapped by a 1×1 convolution to the task's
outputs and resized bilinearly to the input. With Swin-T taps (192/384/768/768) and the four
PASCAL-Context tasks (21, 7, 1, 3 outputs) the four heads hold exactly 1,946,624 parameters.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

HIDDEN_MULTIPLIER = 4


class HRNetHead(nn.Module):
    def __init__(self, tap_channels: tuple[int, ...], out_channels: int,
                 widths: tuple[int, ...]) -> None:
        super().__init__()
        if len(tap_channels) != len(widths):
            raise ValueError(f"{len(tap_channels)} taps but {len(widths)} projection widths")
        self.projections = nn.ModuleList(
            nn.Conv2d(channels, width, kernel_size=1, bias=False)
            for channels, width in zip(tap_channels, widths, strict=True)
        )
        concat = sum(widths)
        hidden = HIDDEN_MULTIPLIER * concat
        self.head = nn.Sequential(
            nn.Conv2d(concat, hidden, kernel_size=1),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, out_channels, kernel_size=1),
        )

    def forward(self, taps: list[torch.Tensor], out_size: tuple[int, int]) -> torch.Tensor:
        projected = [proj(tap) for proj, tap in zip(self.projections, taps, strict=True)]
        size = projected[0].shape[-2:]
        upsampled = [projected[0]] + [
            F.interpolate(p, size=size, mode="bilinear", align_corners=False) for p in projected[1:]
        ]
        out = self.head(torch.cat(upsampled, dim=1))
        return F.interpolate(out, size=out_size, mode="bilinear", align_corners=False)
