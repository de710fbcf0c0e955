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
from torch import nn

from methods.adapter_layers import weight_sets_group
from pebench.backbones import SwinEncoder
from pebench.method import (
    Execution,
    SharableMethod,
    SharingConfig,
    register_method,
)
from pebench.options import option


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
        return self.swin.prompted_taps(images, self.fresh_prompts)

    def fresh_prompts(self, layer: int, num_images: int) -> torch.Tensor | None:
        """(num_images, P, C) for the block of ``layer``, None past the prompted blocks (the
        first for VPT-shallow, every one for VPT-deep): each image gets the prompt set of its
        task (TaskContext.add picks the active task's set in the loop, one set per task-major
        chunk in a batched pass, the one set when shared)."""
        if layer >= len(self.prompts.layers):
            return None
        sets = self.prompts.layers[layer]
        _, num_prompts, width = sets.shape
        flat = self.task_context.add(sets.new_zeros(num_images, num_prompts * width),
                                     sets.flatten(1))
        return self.dropout(flat.view(num_images, num_prompts, width))


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
