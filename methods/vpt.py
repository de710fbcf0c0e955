"""Visual Prompt Tuning for Swin: VPT-shallow and VPT-deep (Jia et al., ECCV 2022).

Learnable prompt tokens join the image tokens of a frozen Swin; only the prompts (and the
decoders) train. **VPT-shallow** inserts one set of prompts at the input of the first block;
they then pass through every block and every patch merging. **VPT-deep** inserts fresh
prompts of the block's width before *every* block, discarding the prompts the previous block
(or patch merging) produced. The decoders see image tokens only: prompts never reach a tap.

How prompts go through a Swin, following the authors' Swin implementation (their
``PromptedSwinTransformerBlock``, ``PromptedWindowAttention`` and ``PromptedPatchMerging``):

* **Windows.** The same P prompts are prepended to the tokens of every (shifted) window, and
  window attention runs over P + window-area tokens. Prompts are identical in every window on
  the way in, so their query/key/value projections are computed once per image here (the
  result is the same). On the way out, the P prompt outputs are averaged over the windows of
  the image, giving one prompt set per image again; the residuals, the second LayerNorm and
  the MLP then treat prompts like any other token.
* **Relative-position bias.** Prompts have no position: the bias is zero on their rows and
  columns (the window tokens keep the pretrained bias among themselves).
* **Shifted-window mask.** The mask is padded with zeros for prompt rows and columns: a prompt
  attends to every token of its window and every token attends to the prompts, across the
  regions that the cyclic shift brings together, while those regions stay masked from each
  other as in the frozen Swin.
* **Patch merging.** Prompts are not mixed with image tokens (the paper: "ignored during patch
  merging"), but carried to the next stage through the frozen merging layer: each prompt is
  treated as a 2×2 group of four copies of itself (concatenated to 4C), then goes through the
  merging's LayerNorm and reduction to 2C. In VPT-deep these merged prompts are replaced
  before the next block, as in the authors' code.

Hyperparameters (``--set``), with the values the VPT paper and code use where they say:

* ``num_prompts`` = 50 prompt tokens per set (P). The paper searches P in {1, 5, 10, 50,
  100, 200} per task; 50 is also the value that the difference between the published
  VPT-deep and VPT-shallow counts implies (4 tasks × 50 × (Swin-T's per-block widths summed
  minus the input width) = 0.864M, published 3.43M − 2.57M = 0.86M).
* Initialisation: every prompt, deep ones included, uniform in ±sqrt(6 / (3·p² + d₀)), the
  Xavier bound of the patch embedding (3·p·p inputs, d₀ = embedding width), as the authors'
  code does (p = 4, d₀ = 96 on Swin-T: ±0.204).
* ``dropout`` = 0.0 on the prompts where they are inserted (the code's default; the paper
  reports none).
* ``shared`` = false: VPT is single-task by origin, so each task owns its prompts (counted as
  ``encoder_task_specific``) and the encoder runs per task. ``shared=true`` trains one prompt
  set for all tasks (``encoder_shared``) and runs the encoder once.
* ``execution`` = loop, unlike the other task-specific methods: the encoder runs task by
  task; ``batched`` runs one task-batched pass (each task's prompts go to its chunk of the
  T·B images) with the same result. With 50 prompts a window attends over 50 more
  tokens than it has (59 on swin-nano's 3×3 windows, 99 on Swin-T's 7×7), so batching adds
  little parallelism the matrix products lacked, while it holds every task's attention maps
  at once (``pebench bench``: 456 MiB saved for backward against 139 MiB for one shared
  pass) and was 2-22% slower per step on a 2-core CPU. Ignored when ``shared``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from timm.models.swin_transformer import SwinTransformerBlock, window_partition, window_reverse
from torch import nn
from torch.nn import functional as F

from methods.adapter_layers import weight_sets_group
from pebench.backbones import SwinEncoder
from pebench.method import (
    Execution,
    SharableMethod,
    SharingConfig,
    option,
    register_method,
)


@dataclass
class VPTConfig(SharingConfig):
    num_prompts: int = option(50, "learnable prompt tokens per prompted block")
    dropout: float = option(0.0, "dropout on the prompts")
    # Loop by default: see the module docstring.
    execution: Execution = option("loop", "per-task prompts: one pass per task (loop) or one "
                                          "task-batched pass (batched); same results")

    def __post_init__(self) -> None:
        if self.num_prompts < 1:
            raise ValueError(f"num_prompts must be ≥ 1, got {self.num_prompts}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


class PromptSets(nn.Module):
    """The learnable prompts: for each block that receives fresh prompts (the first only for
    VPT-shallow, every block for VPT-deep) a (S, P, width) tensor, S = one set per task, or 1
    set shared by all tasks (the TaskContext convention)."""

    def __init__(self, widths: list[int], num_sets: int, num_prompts: int, bound: float,
                 shared: bool) -> None:
        super().__init__()
        self.param_group = weight_sets_group(shared)
        self.layers = nn.ParameterList(
            nn.Parameter(nn.init.uniform_(torch.empty(num_sets, num_prompts, width), -bound, bound))
            for width in widths)


class PromptedSwin(nn.Module):
    """The frozen SwinEncoder run with prompt tokens; the encoder VPT hands to the model.

    It returns the same four taps as ``SwinEncoder`` (image tokens only, NCHW) and reads the
    task context like any task-conditioned module, so the base ``Method.encode`` runs it per
    task, task-batched or once (shared prompts). The prompts live here, inside the encoder,
    and count as encoder parameters (task-specific, or shared).
    """

    def __init__(self, swin: SwinEncoder, prompts: PromptSets, dropout: float) -> None:
        super().__init__()
        self.swin = swin
        self.prompts = prompts
        self.dropout = nn.Dropout(dropout)
        self.task_context = swin.task_context
        self.spec = swin.spec

    @property
    def tap_channels(self) -> tuple[int, ...]:
        return self.swin.tap_channels

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        x = self.swin.model.patch_embed(images)
        mergings = self.swin.patch_mergings()  # stages 1..3: the first has none
        prompts = self.fresh_prompts(0, x.shape[0])
        taps = []
        for site in self.swin.blocks():
            if site.stage > 0 and site.index == 0:
                x, prompts = merge_with_prompts(mergings[site.stage - 1], x, prompts)
                taps.append(x)
            if 0 < site.layer < len(self.prompts.layers):  # VPT-deep: replace before every block
                prompts = self.fresh_prompts(site.layer, x.shape[0])
            x, prompts = prompted_block(site.block, x, prompts)
        taps.append(x)
        return [t.permute(0, 3, 1, 2) for t in taps]

    def fresh_prompts(self, layer: int, num_images: int) -> torch.Tensor:
        """(num_images, P, C): each image gets the prompt set of its task (TaskContext.add
        picks the active task's set in the loop, one set per task-major chunk in a batched
        pass, the one set when shared)."""
        sets = self.prompts.layers[layer]
        _, num_prompts, width = sets.shape
        flat = self.task_context.add(sets.new_zeros(num_images, num_prompts * width),
                                     sets.flatten(1))
        return self.dropout(flat.view(num_images, num_prompts, width))


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
    # The output projection is affine: averaging the prompts over the windows before it gives
    # the same result as after it, at 1/windows of the cost.
    prompts = attn.proj(out[:, :, :num_prompts].mean(dim=1))
    image = attn.proj(out[:, :, num_prompts:])
    image = window_reverse(image.reshape(-1, *block.window_size, c), block.window_size,
                           h + pad_h, w + pad_w)[:, :h, :w]
    if any(shift):
        image = torch.roll(image, shifts=shift, dims=(1, 2))
    return prompts, image


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


class VisualPromptTuning(SharableMethod):
    """Shared machinery of VPT-shallow and VPT-deep (module doc)."""

    Config: ClassVar[type] = VPTConfig
    deep: ClassVar[bool]

    def attach(self, encoder: nn.Module) -> nn.Module:
        spec = encoder.spec
        widths = [site.dim for site in encoder.blocks()]
        bound = math.sqrt(6.0 / (3 * spec.patch_size**2 + spec.embed_dim))
        prompts = PromptSets(widths if self.deep else widths[:1], self.num_sets,
                             self.config.num_prompts, bound, self.config.shared)
        return PromptedSwin(encoder, prompts, self.config.dropout)


@register_method
class VPTShallow(VisualPromptTuning):
    """Prompts inserted once, at the input of the first block (module doc)."""

    name = "vpt-shallow"
    description = "learnable prompt tokens at the input of a frozen Swin (per task)"
    published_name = "VPT-shallow"
    deep = False


@register_method
class VPTDeep(VisualPromptTuning):
    """Fresh prompts of the block's width before every block (module doc)."""

    name = "vpt-deep"
    description = "fresh learnable prompt tokens before every block of a frozen Swin (per task)"
    published_name = "VPT-deep"
    deep = True
