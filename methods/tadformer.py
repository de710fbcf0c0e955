"""TADFormer (Baek et al., CVPR 2025): MTLoRA's shared low-rank updates, task prompts that
travel through the encoder, and in the last block of each stage task-specific features from
the prompts' attention (TPC) filtered by per-task convolutions (DTF).

What the method is, as established from the paper and its released code (Min100KM/TADFormer,
``models/swin_transformer_tadformer.py``, ``models/lora.py``, the ``configs/TADFormer``
files; the configs call the setting "Base MTLoRA"):

* **Shared LoRA** (the TS-module) on ``attn.qkv``, ``attn.proj``, ``mlp.fc1`` and ``mlp.fc2``
  of every block, rank r = ``rank`` (16, 32 or 64 in the published configurations), constant
  scale 4.0 (``scale``), dropout 0.05 (``dropout``); A Kaiming-uniform, B zero.
* **Task prompts**: one prompt token per task (the code's ``PERTASK_LEN`` 1; its per-head
  gating below only works with one), initialised truncated-normal with mean 1, std 1, cut at
  ±2 (timm's ``trunc_normal_`` bounds). In every block the prompts, normalised by the block's
  ``norm1``, join every (shifted) window; the image tokens attend to them, they get no
  relative position and no shift mask; their outputs are averaged over the windows. After
  the attention they are updated as ``p + MLP(norm2(attended prompts))`` with the block's
  MLP and its shared LoRA (not in the very last block, whose prompts nothing reads). At each
  patch merging a new bias-free Linear C -> 2C (``task_prompts_up``, truncated-normal std
  0.02) widens them.
* **The task-adapting block** (the last block of each stage) computes the shared stream as
  every other block, and beside it, per task t (the code's default ``shared_mode='matrix'``,
  as MTLoRA):
  - TPC: the raw scores q·kᵀ of task t's prompt against each image token (per head, before
    scale, bias and softmax) through GELU weight that head's channels of the attention
    output z: ``skip_t = GELU(score_t) ⊙ z`` and ``x_t = LN(z + skip_t)`` (``prompt_norm``,
    one LayerNorm per block, shared by the tasks).
  - DTF: a depthwise k×k filter over the r channels of the linear's *shared* LoRA
    bottleneck, so the task update of a linear is ``s·B·filter_t(A·x_t)``. The paper's
    filter is dynamic, its kernels generated from the input (``filters=dynamic``, the
    default; ``DynamicTaskFilter`` says how). The released code defines that class but runs
    a static per-task convolution instead (``NaiveConvFilter``; ``filters=static``). The
    published trainable counts include the dynamic generators (README, Parameter
    accounting), so the dynamic filter is what the paper's table measured. For the
    projection the filter runs inside each window (zero padding at the window border), for
    fc1 and fc2 over the whole stage map.
  - As in MTLoRA, each task-specific linear adds its task update to the frozen output of
    the *shared* input, and the shared update does not enter the task output:
    ``a_t = x + W_proj·z + b + s·B·filter_t(A·x_t)``,
    ``h_t = fc1_frozen + s·B1·filter_t(A1·norm2(a_t))``,
    ``out_t = a_t + fc2_frozen + s·B2·filter_t(A2·GELU(h_t))``.
  - Stage-wise gating (the r32 and r64 configs' ``SKIPCONNECTION`` and ``STAGEWISEGATING``;
    the r16 config omits them but the code reads them unconditionally, so they are taken as
    on): ``feat_t = σ(g)·skip_t + (1 - σ(g))·out_t``, one scalar g per stage, initialised at
    0; ``skip_t`` in place (windows merged, shift undone). With gating off but the skip on,
    the two are averaged.
  - The task features go through the stage's patch merging, shared by the tasks, as the
    shared stream does: pebench's tap layout (MTLoRA's module doc).
* **Also trained** (the code's ``mark_only_lora_as_trainable`` with the configs' flags): the
  patch embedding, every LayerNorm (the patch mergings' too), the relative-position bias
  tables; the patch-merging reductions stay frozen (``FREEZE_DOWNSAMPLE_REDUCTION``).

A consequence kept because it is the method's: the model does not start as the frozen one
(the image tokens attend to the prompts from the first step, and the gate mixes in half of
``skip_t``). Unlike MTLoRA's, every trainable parameter reaches a tap: the task updates go
through the shared factors, those of the very last block's fc2 included.

Choices of ours: the LoRA dropout acts on the input of every low-rank product, the task
inputs included (the code drops the projection's shared input once and derives ``x_t`` and
``skip_t`` from the dropped tensor; it does not drop the task inputs of fc1 and fc2);
averaging the prompts over the windows before the output projection instead of after (the
projection is affine; only its dropout mask differs); stochastic depth off (the code uses
0.2), as for every pebench method; the learning rate is the harness default 1e-3, as for
MTLoRA, on whose recipe the released configs build.

Execution. The shared stream, prompts included, runs once on the B images; each task's
branch of a stage's last block runs afterwards from what the shared pass kept (per task in
``loop``, all tasks at once in ``batched``, each filter as one grouped convolution),
with the same result.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import nn
from torch.nn import functional as F

from methods.lora_layers import LowRankUpdate
from methods.mtlora import (
    AdaptedLinear,
    StageEndConfig,
    published_row_by_rank,
    unfreeze_extras,
)
from pebench.backbones import BRANCH_LINEARS
from pebench.method import Method, TaskFeatures, per_task, register_method
from pebench.options import option
from pebench.params import ENCODER_SHARED, ENCODER_TASK_SPECIFIC
from pebench.prompted_swin import PromptedWindows, attend_in_windows

# timm's trunc_normal_ cuts at these absolute bounds whatever the mean and std.
TRUNCATION = (-2.0, 2.0)
PROMPT_MEAN, PROMPT_STD = 1.0, 1.0
FILTER_NORM_EPS = 1e-10  # FilterNorm's
PROMPT_UP_STD = 0.02  # the released Swin's init of every Linear it does not load
TaskFilterKind = Literal["dynamic", "static"]


@dataclass
class TADFormerConfig(StageEndConfig):
    rank: int = option(16, "rank r of the shared LoRA in every block (16, 32, 64 published)")
    scale: float = option(4.0, "constant scale of every low-rank update")
    dropout: float = option(0.05, "dropout on the input of every low-rank product")
    filters: TaskFilterKind = option("dynamic", "dynamic: the paper's DTF, kernels generated "
                                                "from each input's pooled bottleneck; static: "
                                                "the released code's per-task kernels")
    filter_size: int = option(3, "size of the depthwise task filters over the r channels")
    skip_connection: bool = option(True, "mix the prompt-weighted attention output into each "
                                         "task's stage output")
    stagewise_gating: bool = option(True, "mix by a learnt gate per stage (σ(g), g from 0); "
                                          "off: average the two")
    train_patch_merging: bool = False  # FREEZE_DOWNSAMPLE_REDUCTION in the configs

    def __post_init__(self) -> None:
        if self.rank < 1:
            raise ValueError(f"rank must be ≥ 1, got {self.rank}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.filter_size < 1 or self.filter_size % 2 == 0:
            raise ValueError(f"filter_size must be odd and ≥ 1, got {self.filter_size}")


class StaticTaskFilters(nn.Module):
    """The released code's ``NaiveConvFilter``: each task's own depthwise k×k convolution with
    bias over the r channels of a low-rank bottleneck, initialised as its ``nn.Conv2d``
    (PyTorch's default)."""

    param_group = ENCODER_TASK_SPECIFIC

    def __init__(self, num_tasks: int, channels: int, size: int) -> None:
        super().__init__()
        convs = [nn.Conv2d(channels, channels, size, padding=size // 2, groups=channels)
                 for _ in range(num_tasks)]
        self.weight = nn.Parameter(torch.stack([conv.weight.detach() for conv in convs]))
        self.bias = nn.Parameter(torch.stack([conv.bias.detach() for conv in convs]))

    def forward(self, x: torch.Tensor, tasks: slice) -> torch.Tensor:
        """x (S, M, H, W, r), the S tasks ``tasks`` selects stacked first; each task's maps
        filtered by its own kernels, as one grouped convolution."""
        weight, bias = self.weight[tasks], self.bias[tasks]
        sets, images, height, width, channels = x.shape
        size = weight.shape[-1]
        grouped = x.permute(1, 0, 4, 2, 3).reshape(images, sets * channels, height, width)
        out = F.conv2d(grouped, weight.reshape(-1, 1, size, size), bias.reshape(-1),
                       padding=size // 2, groups=sets * channels)
        return out.reshape(images, sets, channels, height, width).permute(1, 0, 3, 4, 2)


class DynamicTaskFilter(nn.Module):
    """DTF, the paper's dynamic task filter (the released code's ``DTF`` class with its
    ``FilterNorm``, after DDF, Zhou et al., CVPR 2021): depthwise k×k kernels generated for
    each input from its average-pooled bottleneck by a 1×1 convolution (r -> r·k²), each
    channel's k² taps normalised to zero mean and unit std, then scaled and shifted by learnt
    per-tap vectors. One generator per linear, shared by the tasks: each task's kernels
    differ because its input does (the prompt-weighted features). Inputs are pooled over
    what the filter sees: a window for the projection, the stage map for fc1 and fc2."""

    param_group = ENCODER_SHARED

    def __init__(self, channels: int, size: int) -> None:
        super().__init__()
        taps = channels * size * size
        # A 1×1 convolution of a pooled vector is a Linear with the same default init.
        self.generate = nn.Linear(channels, taps)
        self.tap_scale = nn.Parameter(torch.randn(taps) * nn.init.calculate_gain("relu") / size)
        self.tap_shift = nn.Parameter(torch.randn(taps))
        self.size = size

    def forward(self, x: torch.Tensor, tasks: slice) -> torch.Tensor:
        """x (S, M, H, W, r): each of the S·M maps filtered by its own generated kernels."""
        del tasks  # the generator is shared; the kernels follow the input
        sets, images, height, width, channels = x.shape
        kernels = self.generate(x.mean(dim=(2, 3))).view(sets, images, channels, -1)
        kernels = (kernels - kernels.mean(-1, keepdim=True)) / (
            kernels.std(-1, keepdim=True) + FILTER_NORM_EPS)
        kernels = kernels.flatten(-2) * self.tap_scale + self.tap_shift
        maps = sets * images * channels
        grouped = x.permute(0, 1, 4, 2, 3).reshape(1, maps, height, width)
        out = F.conv2d(grouped, kernels.reshape(maps, 1, self.size, self.size),
                       padding=self.size // 2, groups=maps)
        return out.reshape(sets, images, channels, height, width).permute(0, 1, 3, 4, 2)


TaskFilters = StaticTaskFilters | DynamicTaskFilter


def make_filters(kind: str, num_tasks: int, channels: int, size: int) -> TaskFilters:
    if kind == "static":
        return StaticTaskFilters(num_tasks, channels, size)
    return DynamicTaskFilter(channels, size)


def filtered_update(update: LowRankUpdate, filters: TaskFilters, x: torch.Tensor,
                    tasks: slice) -> torch.Tensor:
    """The task update s·B·conv_t(A·x) through a linear's *shared* factors, x (S, M, H, W, in)
    in image layout."""
    low = update.dropout(x) @ update.lora_a[0]
    return update.scale * (filters(low, tasks) @ update.lora_b[0])


class TaskAdaptingBlock(nn.Module):
    """What the last block of a stage adds: the projection's prompt norm, the task filters
    of the projection, fc1 and fc2, and the stage's gate."""

    param_group = ENCODER_SHARED  # the filters declare their own group

    def __init__(self, filters: str, num_tasks: int, dim: int, rank: int, size: int) -> None:
        super().__init__()
        self.prompt_norm = nn.LayerNorm(dim)
        self.proj_filters = make_filters(filters, num_tasks, rank, size)
        self.fc1_filters = make_filters(filters, num_tasks, rank, size)
        self.fc2_filters = make_filters(filters, num_tasks, rank, size)
        self.gate = nn.Parameter(torch.zeros(1))


class TaskPrompts(nn.Module):
    """One prompt token per task at the embedding width, and the Linear C -> 2C that widens
    them at each patch merging."""

    param_group = ENCODER_TASK_SPECIFIC

    def __init__(self, num_tasks: int, stage_dims: tuple[int, ...]) -> None:
        super().__init__()
        self.tokens = nn.Parameter(torch.empty(num_tasks, stage_dims[0]))
        nn.init.trunc_normal_(self.tokens, PROMPT_MEAN, PROMPT_STD, *TRUNCATION)
        self.widen = nn.ModuleList(nn.Linear(dim, 2 * dim, bias=False)
                                   for dim in stage_dims[:-1])
        for linear in self.widen:
            nn.init.trunc_normal_(linear.weight, std=PROMPT_UP_STD, a=TRUNCATION[0],
                                  b=TRUNCATION[1])
            linear.param_group = ENCODER_SHARED  # one map for every task's prompt


@dataclass
class StageEndPass:
    """What the shared pass of a stage's last block keeps for the task branches: the block,
    its input x (N, H, W, C), its prompted window attention, the frozen projection of the
    windows' attention output (N, nW, A, C), and the frozen fc1 and fc2 outputs of the
    shared stream (N, H, W, ·)."""

    stage: int
    block: nn.Module
    x: torch.Tensor
    attended: PromptedWindows
    proj_frozen: torch.Tensor
    fc1_frozen: torch.Tensor
    fc2_frozen: torch.Tensor


class SharedPass:
    """One forward pass of the shared stream with the prompts carried from block to block and
    through the mergings (``SwinEncoder.taps`` calls ``block`` and ``merge``); keeps what each
    stage's last block hands to the task branches."""

    def __init__(self, prompts: TaskPrompts, stage_ends: dict[int, int], last_layer: int,
                 num_images: int) -> None:
        self.widen = prompts.widen
        self.prompts = prompts.tokens.expand(num_images, -1, -1)
        self.stage_ends = stage_ends
        self.last_layer = last_layer
        self.merged = 0
        self.kept: dict[int, StageEndPass] = {}

    def block(self, block: nn.Module, layer: int, x: torch.Tensor) -> torch.Tensor:
        attended = attend_in_windows(block, block.norm1(x), block.norm1(self.prompts))
        proj, mlp = block.attn.proj, block.mlp
        if layer in self.stage_ends:
            proj_frozen, proj_update = proj.parts(attended.windows)
            mid = x + attended.to_image(proj_frozen + proj_update)
            fc1_frozen, fc1_update = mlp.fc1.parts(block.norm2(mid))
            fc2_frozen, fc2_update = mlp.fc2.parts(mlp.act(fc1_frozen + fc1_update))
            out = mid + fc2_frozen + fc2_update
            self.kept[layer] = StageEndPass(self.stage_ends[layer], block, x, attended,
                                            proj_frozen, fc1_frozen, fc2_frozen)
        else:
            mid = x + attended.to_image(proj(attended.windows))
            out = mid + mlp(block.norm2(mid))
        if layer != self.last_layer:
            self.prompts = self.prompts + mlp(block.norm2(proj(attended.prompts)))
        return out

    def merge(self, merging: nn.Module, x: torch.Tensor) -> torch.Tensor:
        self.prompts = self.widen[self.merged](self.prompts)
        self.merged += 1
        return merging(x)


@register_method
class TADFormer(Method):
    """Shared LoRA, task prompts, and prompt-conditioned, per-task filtered features in each
    stage's last block (module doc)."""

    name = "tadformer"
    description = ("shared LoRA, task prompts through the encoder, prompt-weighted and "
                   "per-task filtered features in each stage's last block (TADFormer)")
    Config: ClassVar[type] = TADFormerConfig
    task_specific_encoder = True
    # The published table has a row for each of these ranks, all else at the defaults.
    PUBLISHED_RANKS: ClassVar[dict[int, str]] = {
        16: "TADFormer (r=16)", 32: "TADFormer (r=32)", 64: "TADFormer (r=64)"}

    @classmethod
    def published_row(cls, config: TADFormerConfig) -> str | None:
        return published_row_by_rank(cls.Config, config, cls.PUBLISHED_RANKS)

    def attach(self, encoder: nn.Module) -> nn.Module:
        config = self.config
        sites = list(encoder.blocks())
        last = {site.stage: site for site in sites}
        self._stage_ends = {site.layer: site.stage for site in last.values()}
        self._last_layer = sites[-1].layer
        for site in sites:
            for target in BRANCH_LINEARS:
                site.replace_linear(target, lambda base: AdaptedLinear(base, LowRankUpdate(
                    encoder.task_context, base.in_features, base.out_features, 1,
                    config.rank, config.scale, config.dropout, ENCODER_SHARED)))
        self.prompts = TaskPrompts(len(self.tasks), encoder.spec.stage_dims)
        self.task_blocks = nn.ModuleDict({
            str(site.layer): TaskAdaptingBlock(config.filters, len(self.tasks), site.dim,
                                               config.rank, config.filter_size)
            for site in last.values()})
        unfreeze_extras(encoder, config)
        return encoder

    def encode(self, encoder: nn.Module, images: torch.Tensor) -> TaskFeatures:
        """The shared stream with the prompts once, then each stage's task branch per task
        (loop) or for all tasks at once (batched), each through the stage's patch merging."""
        shared = SharedPass(self.prompts, self._stage_ends, self._last_layer, images.shape[0])
        encoder.taps(images, block=shared.block, merge=shared.merge)

        def taps(index: int | None) -> list[torch.Tensor]:
            tasks = slice(None) if index is None else slice(index, index + 1)
            return [encoder.stage_tap(end.stage, self._task_features(end, layer, tasks))
                    .permute(0, 3, 1, 2) for layer, end in shared.kept.items()]

        return per_task(encoder.task_context, self.tasks, self.execution, taps)

    def _task_features(self, end: StageEndPass, layer: int, tasks: slice) -> torch.Tensor:
        """The stage output of the tasks ``tasks`` selects, task-major (S·N, H, W, C)."""
        config, modules = self.config, self.task_blocks[str(layer)]
        block, attended = end.block, end.attended
        proj, mlp = block.attn.proj, block.mlp
        scores = attended.prompt_scores()[:, :, :, tasks]  # (N, nW, heads, S, A)
        images, windows, heads, sets, area = scores.shape
        context = attended.windows  # (N, nW, A, C)
        channels = context.shape[-1]
        # TPC: each head's channels weighted by GELU of the task prompt's score on the token.
        weights = F.gelu(scores).permute(3, 0, 1, 4, 2).unsqueeze(-1)  # (S, N, nW, A, heads, 1)
        skip = (weights * context.view(images, windows, area, heads, -1)).flatten(-2)
        task_in = modules.prompt_norm(context + skip)
        update = filtered_update(
            proj.shared, modules.proj_filters,
            task_in.reshape(sets, images * windows, *block.window_size, channels), tasks)
        projected = end.proj_frozen + update.reshape(sets, images, windows, area, channels)

        def in_place(windowed: torch.Tensor) -> torch.Tensor:
            image = attended.to_image(windowed.reshape(sets * images, windows, area, -1))
            return image.reshape(sets, *end.x.shape)

        attended_t = end.x + in_place(projected)
        hidden = end.fc1_frozen + filtered_update(
            mlp.fc1.shared, modules.fc1_filters, block.norm2(attended_t), tasks)
        out = attended_t + end.fc2_frozen + filtered_update(
            mlp.fc2.shared, modules.fc2_filters, mlp.act(hidden), tasks)
        if config.skip_connection:
            gate = torch.sigmoid(modules.gate) if config.stagewise_gating else 0.5
            out = gate * in_place(skip) + (1 - gate) * out
        return out.flatten(0, 1)
