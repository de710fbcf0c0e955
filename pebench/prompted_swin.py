"""A frozen Swin run with prompt tokens: how prompts pass through timm's blocks, windows and
patch mergings (VPT, Jia et al., ECCV 2022, after the authors' ``PromptedSwinTransformerBlock``,
``PromptedWindowAttention`` and ``PromptedPatchMerging``; ``methods/vpt.py`` documents the
rules). Backbone code, so that the method itself only owns its prompts: every line that
knows timm's Swin internals lives beside ``pebench.backbones``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from timm.models.swin_transformer import SwinTransformerBlock, window_partition, window_reverse
from torch import nn
from torch.nn import functional as F

# Fresh prompts (num_images, P, C) for the block of a given layer, or None to keep carrying
# the prompts the previous block (or patch merging) produced.
FreshPrompts = Callable[[int, int], "torch.Tensor | None"]


class PromptedPass:
    """One forward pass's prompts, carried from block to block and through the mergings:
    ``SwinEncoder.taps`` calls ``block`` and ``merge`` in place of the plain ones."""

    def __init__(self, fresh: FreshPrompts) -> None:
        self.fresh = fresh
        self.prompts: torch.Tensor | None = None

    def block(self, block: SwinTransformerBlock, layer: int, x: torch.Tensor) -> torch.Tensor:
        fresh = self.fresh(layer, x.shape[0])
        if fresh is not None:
            self.prompts = fresh
        if self.prompts is None:
            raise ValueError("the first block needs prompts: FreshPrompts(0, N) returned None")
        x, self.prompts = prompted_block(block, x, self.prompts)
        return x

    def merge(self, merging: nn.Module, x: torch.Tensor) -> torch.Tensor:
        assert self.prompts is not None  # a merging follows a block
        x, self.prompts = merge_with_prompts(merging, x, self.prompts)
        return x


def prompted_block(block: SwinTransformerBlock, x: torch.Tensor,
                   prompts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One frozen Swin block over image tokens x (N, H, W, C) and prompts (N, P, C)."""
    n, h, w, c = x.shape
    num_prompts = prompts.shape[1]
    tokens = torch.cat([prompts, x.reshape(n, h * w, c)], dim=1)
    normed = block.norm1(tokens)
    attended_prompts, attended_x = window_attention(
        block, normed[:, num_prompts:].reshape(n, h, w, c), normed[:, :num_prompts])
    attended = torch.cat([attended_prompts, attended_x.reshape(n, h * w, c)], dim=1)
    tokens = tokens + block.drop_path1(attended)
    tokens = tokens + block.drop_path2(block.mlp(block.norm2(tokens)))
    return tokens[:, num_prompts:].reshape(n, h, w, c), tokens[:, :num_prompts]


def window_attention(block: SwinTransformerBlock, x: torch.Tensor,
                     prompts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(S)W-MSA with the prompts prepended to every window: returns the prompts averaged over
    the windows (N, P, C) and the image tokens in place (N, H, W, C). Cyclic shift and
    padding to whole windows are timm's, so no prompts means exactly the frozen block (whose
    attention and projection dropout SwinEncoder leaves at 0)."""
    attended = attend_in_windows(block, x, prompts)
    proj = block.attn.proj
    return proj(attended.prompts), attended.to_image(proj(attended.windows))


@dataclass
class PromptedWindows:
    """One block's window attention over image tokens and prompts, before the output
    projection: what a method that treats the projection itself needs (TADFormer)."""

    block: SwinTransformerBlock
    height: int  # of the image tokens, before padding to whole windows
    width: int
    # The prompts' attention output averaged over the windows (N, P, C). The output
    # projection is affine, so projecting the average gives the average of the projections at
    # 1/windows of the cost.
    prompts: torch.Tensor
    windows: torch.Tensor  # the image tokens' attention output, window by window (N, nW, A, C)
    prompt_queries: torch.Tensor  # (N, heads, P, head_dim)
    window_keys: torch.Tensor  # the image tokens' keys (N, nW, heads, A, head_dim)

    def prompt_scores(self) -> torch.Tensor:
        """The raw prompt-to-token scores q·kᵀ (N, nW, heads, P, A): before the scale, the
        relative-position bias (prompts have no position) and the softmax."""
        return self.prompt_queries.unsqueeze(1) @ self.window_keys.transpose(-2, -1)

    def to_image(self, windows: torch.Tensor) -> torch.Tensor:
        """Tokens in window layout (M, nW, A, C') back in place (M, H, W, C'): the windows
        merged, the padding cropped and the cyclic shift undone."""
        block = self.block
        height, width = self.height, self.width
        padded = (height - height % -block.window_size[0], width - width % -block.window_size[1])
        image = window_reverse(windows.reshape(-1, *block.window_size, windows.shape[-1]),
                               block.window_size, *padded)[:, :height, :width]
        return torch.roll(image, shifts=block.shift_size, dims=(1, 2)) if any(
            block.shift_size) else image


def attend_in_windows(block: SwinTransformerBlock, x: torch.Tensor,
                      prompts: torch.Tensor) -> PromptedWindows:
    """The (shifted) window attention of image tokens x (N, H, W, C), already normalised,
    with the prompts (N, P, C) prepended to every window, up to the output projection."""
    n, h, w, c = x.shape
    attn = block.attn
    shift = block.shift_size
    if any(shift):
        x = torch.roll(x, shifts=(-shift[0], -shift[1]), dims=(1, 2))
    pad_h, pad_w = -h % block.window_size[0], -w % block.window_size[1]
    x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    windows = window_partition(x, block.window_size).reshape(n, -1, attn.window_area, c)
    num_windows, num_prompts = windows.shape[1], prompts.shape[1]
    length = num_prompts + attn.window_area
    prompt_qkv = attn.qkv(prompts).unsqueeze(1).expand(-1, num_windows, -1, -1)
    qkv = torch.cat([prompt_qkv, attn.qkv(windows)], dim=2)
    # (3, N, windows, heads, tokens, head_dim)
    q, k, v = qkv.reshape(n, num_windows, length, 3, attn.num_heads, -1).permute(
        3, 0, 1, 4, 2, 5).unbind(0)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=prompted_bias(block, num_prompts),
                                         scale=attn.scale)
    out = out.transpose(2, 3).reshape(n, num_windows, length, -1)
    return PromptedWindows(block, h, w, out[:, :, :num_prompts].mean(dim=1),
                           out[:, :, num_prompts:], q[:, 0, :, :num_prompts],
                           k[:, :, :, num_prompts:])


def prompted_bias(block: SwinTransformerBlock, num_prompts: int) -> torch.Tensor:
    """The relative-position bias plus the shifted-window mask, ([windows,] heads, L, L),
    padded with zeros on the prompt rows and columns (no position, no mask for prompts)."""
    attn = block.attn
    area = attn.window_area
    bias = attn.relative_position_bias_table[attn.relative_position_index.view(-1)]
    bias = bias.view(area, area, -1).permute(2, 0, 1)
    if block.attn_mask is not None:
        bias = bias.unsqueeze(0) + block.attn_mask.unsqueeze(1)
    return F.pad(bias, (num_prompts, 0, num_prompts, 0))


def merge_with_prompts(merging: nn.Module, x: torch.Tensor,
                       prompts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Patch merging of the image tokens; each prompt goes through the same frozen norm and
    reduction as a 2×2 group of four copies of itself."""
    return merging(x), merging.reduction(merging.norm(prompts.repeat(1, 1, 4)))
