"""Swin window attention with one relative-position bias table per task (backbone code: it
knows timm's ``WindowAttention``).

BitFit implementations train every parameter whose name contains "bias", which in a Swin
includes each block's relative-position bias table; the multi-task form gives every task its
own copy. The table enters the attention logits inside timm's window attention, so the copy a
window uses must be chosen there: this module takes the place of a block's ``attn`` and
computes what timm's computes (the fused path: one scaled-dot-product attention with the
bias, and the shifted-window mask, as its mask), with the bias of the active task in the
per-task loop, of each task-major group of windows in a task-batched pass, or of the one
shared copy.
"""

from __future__ import annotations

import torch
from timm.models.swin_transformer import WindowAttention
from torch import nn
from torch.nn import functional as F

from pebench.task_context import TaskContext


class TaskWindowAttention(nn.Module):
    """``attn`` (a timm ``WindowAttention``) with ``num_sets`` trainable copies of its
    relative-position bias table, initialised from the pretrained one; its projections are
    the same modules (a method may have wrapped them), the rest stays frozen."""

    def __init__(self, attn: WindowAttention, context: TaskContext, num_sets: int,
                 param_group: str) -> None:
        super().__init__()
        self.qkv, self.proj = attn.qkv, attn.proj
        self.num_heads, self.scale, self.window_area = attn.num_heads, attn.scale, attn.window_area
        self.register_buffer("relative_position_index", attn.relative_position_index,
                             persistent=False)
        table = attn.relative_position_bias_table.detach()
        self.relative_position_bias_table = nn.Parameter(
            table.unsqueeze(0).repeat(num_sets, *([1] * table.dim())))
        self.context = context
        self.param_group = param_group

    def position_bias(self) -> torch.Tensor:
        """(sets, heads, N, N) from the tables, N the window area."""
        n = self.window_area
        bias = self.relative_position_bias_table[:, self.relative_position_index.view(-1)]
        return bias.view(-1, n, n, self.num_heads).permute(0, 3, 1, 2)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        windows, n, _ = x.shape  # (T·)B·nW windows, task-major in a batched pass
        q, k, v = self.qkv(x).reshape(windows, n, 3, self.num_heads, -1).permute(
            2, 0, 3, 1, 4).unbind(0)
        bias = self.context.sets_for_input(self.position_bias())
        groups = bias.shape[0]
        attn_mask = bias.unsqueeze(1).expand(groups, windows // groups, -1, -1, -1).reshape(
            windows, self.num_heads, n, n) if groups > 1 else bias
        if mask is not None:  # the shifted-window mask, per window, as timm adds it
            num_win = mask.shape[0]
            attn_mask = attn_mask + mask.view(1, num_win, 1, n, n).expand(
                windows // num_win, -1, self.num_heads, -1, -1).reshape(-1, self.num_heads, n, n)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, scale=self.scale)
        return self.proj(out.transpose(1, 2).reshape(windows, n, -1))
