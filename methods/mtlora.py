"""MTLoRA (Agiza et al., CVPR 2024): task-agnostic LoRA in every block, task-specific LoRA in
the last block of each stage, and per-task feature taps.

What the method is, as established from the paper and its released code (scale-lab/MTLoRA,
``models/lora.py``, ``models/swin_transformer_mtlora.py``, the ``tiny_448`` configs):

* **TA-LoRA** (task-agnostic, one weight set) on ``attn.qkv``, ``attn.proj``, ``mlp.fc1`` and
  ``mlp.fc2`` of every block (``targets``), rank r = ``rank`` (16 for "MTLoRA (r=16)").
* **TS-LoRA** (task-specific, one weight set per task) on ``attn.proj``, ``mlp.fc1`` and
  ``mlp.fc2`` of the *last* block of each stage (``task_targets``; the code keeps ``attn.qkv``
  task-agnostic there), rank ``task_rank`` = 4 whatever r is.
* Updates are scaled by a constant, not by alpha / r: 4.0 for both (``shared_scale``,
  ``task_scale``); LoRA dropout 0.05 (``dropout``); A Kaiming-uniform, B zero, so the model
  starts as the frozen one.
* The **shared stream continues**: every block's task-agnostic output feeds the next block
  and stage. The last block of a stage also emits one output per task, which only feeds that
  task's tap. Inside that block (the code's default ``shared_mode='matrix'``) the attention is
  computed once from the shared input; each task-specific linear then adds *its task's*
  low-rank update of *the task's* input to the frozen projection of *the shared* input, and
  the task-agnostic update of that linear does not enter the task output. Per task t:
  ``a_t = x + W_proj·z + s_t·ΔP_t(z)``, ``h_t = W_1·n + s_t·ΔF1_t(norm2(a_t))``,
  ``out_t = a_t + W_2·g + s_t·ΔF2_t(GELU(h_t))``, with z the attention context, n =
  norm2(x_mid) and g = GELU(fc1(n)) of the shared stream.
* **Taps**: the code keeps Swin's original layout (patch merging at the end of a stage) and
  passes each task's stage output through the stage's patch merging, which is shared by all
  tasks and trainable; the last stage's task outputs are taps as they are. That is exactly
  pebench's tap layout: tap i is ``patch_mergings()[i]`` applied to the task's output of
  stage i.
* **Also trained** (``mark_only_lora_as_trainable`` with the configs' defaults): the patch
  embedding (convolution and norm), every LayerNorm, the relative-position bias tables and
  the patch-merging reductions (``train_patch_embed``, ``train_layer_norms``,
  ``train_position_bias``, ``train_patch_merging``). With them the published setting holds
  4,953,146 trainable parameters at r = 16 (published 4.95M) and 8,344,634 at r = 64 (8.34M).

Two consequences of this design, kept because they are the method's: the task-agnostic
update of the very last block's fc2 never gets a gradient (it only changes the shared
stream's final output, and every last-stage tap is a task's own output; the published count
includes it), and a task's fc1 update learns only once its fc2 update is non-zero (the task
stream's fc1 output reaches the tap through fc2's task update alone).

Choices of ours, documented here because nothing in pebench's harness forces them: the
dropout acts on the input of every low-rank update (the code skips it on the task inputs of
fc1 and fc2), and stochastic depth stays off as in every pebench method (the code uses 0.2).

Execution. The shared stream runs once on the B images (not T times). MTLoRA runs the last
block of each stage step by step itself (``StageEnd.shared_pass``), which returns beside the
block's output what the task branch needs (``SharedPass``: the attention context z in image
layout, the projection's task-agnostic update of it, x_mid, the frozen fc1 and fc2 outputs);
``encode`` passes that value on to the task branch, and nothing is kept on a module between
calls. Every operation of the task branch is token-wise, so it runs afterwards, per task
(``execution=loop``) or as one task-batched pass over T·B copies (``batched``), with the
same result. To see z in image layout the block's attention projection is moved from inside
the window attention (where tokens are grouped in shifted windows) to the branch output
after window merging; the projection is token-wise, so the move changes nothing but the
order in which rows are computed (and the block's own forward is still the shared stream).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import torch
from torch import nn

from methods.lora_layers import LowRankUpdate
from pebench.backbones import BRANCH_LINEARS, BlockSite, SwinEncoder
from pebench.method import (
    Execution,
    Method,
    TaskFeatures,
    per_task,
    register_method,
)
from pebench.options import option
from pebench.params import ENCODER_SHARED, ENCODER_TASK_SPECIFIC

TASK_LINEARS = ("attn.proj", "mlp.fc1", "mlp.fc2")


@dataclass
class StageEndConfig:
    """The options of MTLoRA and of the methods built on its code (TADFormer, DiTASK): what
    trains besides their adapted linears, and how their task branches run."""

    train_patch_embed: bool = option(True, "also train the patch embedding (conv and norm)")
    train_layer_norms: bool = option(True, "also train every layer norm")
    train_position_bias: bool = option(True, "also train the relative-position bias tables")
    train_patch_merging: bool = option(True, "also train the patch-merging reductions")
    execution: Execution = option("batched", "task branches as one task-batched pass "
                                             "(batched) or one pass per task (loop)")


@dataclass
class MTLoRAConfig(StageEndConfig):
    rank: int = option(16, "rank r of the task-agnostic LoRA in every block")
    task_rank: int = option(4, "rank of the task-specific LoRA in each stage's last block")
    shared_scale: float = option(4.0, "constant scale of the task-agnostic updates")
    task_scale: float = option(4.0, "constant scale of the task-specific updates")
    dropout: float = option(0.05, "dropout on the input of every low-rank update")
    targets: tuple[str, ...] = option(BRANCH_LINEARS, "comma-separated linears with "
                                                      "task-agnostic LoRA")
    task_targets: tuple[str, ...] = option(TASK_LINEARS, "comma-separated linears with "
                                                         "task-specific LoRA")

    def __post_init__(self) -> None:
        for name in ("rank", "task_rank"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be ≥ 1, got {getattr(self, name)}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if any(t not in BRANCH_LINEARS for t in self.targets):
            raise ValueError(f"targets {','.join(self.targets)} must be among "
                             f"{', '.join(BRANCH_LINEARS)}")
        if not self.task_targets or any(t not in TASK_LINEARS for t in self.task_targets):
            raise ValueError(f"task_targets {','.join(self.task_targets) or '(none)'} must be "
                             f"one or more of {', '.join(TASK_LINEARS)} (the attention is "
                             "computed once, so attn.qkv cannot be task-specific)")


class AdaptedLinear(nn.Module):
    """A frozen Linear plus its task-agnostic update (if targeted) and, in the last block of a
    stage, its task-specific update (if targeted)."""

    def __init__(self, base: nn.Linear, shared: LowRankUpdate | None,
                 tasks: LowRankUpdate | None = None) -> None:
        super().__init__()
        self.base = base
        self.shared = shared
        self.tasks = tasks

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        frozen, update = self.parts(x)
        return frozen if update is None else frozen + update

    def parts(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The frozen output and the task-agnostic update (None if not targeted), apart: the
        task branch reuses the first and must not see the second."""
        return self.base(x), None if self.shared is None else self.shared(x)

    def task_update(self, x: torch.Tensor) -> torch.Tensor | float:
        return 0.0 if self.tasks is None else self.tasks(x)


@dataclass
class SharedPass:
    """What the shared pass of a stage's last block hands to that block's task branch, all
    (N, H, W, ·): the attention context z, the projection's task-agnostic update of it (None
    if not targeted; reused so that a dropout mask is not drawn twice), the stream after the
    attention sub-layer x_mid, and the frozen fc1 and fc2 outputs."""

    context: torch.Tensor
    proj_update: torch.Tensor | None
    mid: torch.Tensor
    fc1_frozen: torch.Tensor
    fc2_frozen: torch.Tensor

    def repeated(self, copies: int) -> SharedPass:
        """``copies`` task-major copies of every tensor (the task-batched pass)."""
        if copies == 1:
            return self

        def repeat(x: torch.Tensor | None) -> torch.Tensor | None:
            return None if x is None else x.repeat(copies, 1, 1, 1)

        return SharedPass(*(repeat(getattr(self, f.name))
                            for f in dataclasses.fields(self)))  # type: ignore[arg-type]


class StageEnd:
    """The last block of a stage under MTLoRA (module doc): ``shared_pass`` runs the block's
    shared stream step by step and returns what the task branch needs beside its output;
    ``task_output`` runs the task branch from that for the tasks of the active TaskContext.

    Its modules live in the block (so the block's own forward is still the shared stream):
    the attention projection, moved after the window merging (``attn.proj`` is the
    identity), and ``fc1``, ``fc2``, each an AdaptedLinear with its task-specific update.
    """

    def __init__(self, site: BlockSite, proj: AdaptedLinear) -> None:
        self.site = site
        self.stage = site.stage
        self.proj = proj
        self.norm = site.submodule("norm2")
        mlp = site.submodule("mlp")
        self.fc1, self.fc2, self.act = mlp.fc1, mlp.fc2, mlp.act

    def shared_pass(self, x: torch.Tensor) -> tuple[torch.Tensor, SharedPass]:
        context = self.site.attention_branch(x)
        proj_frozen, proj_update = self.proj.parts(context)
        mid = x + proj_frozen if proj_update is None else x + proj_frozen + proj_update
        fc1_frozen, fc1_update = self.fc1.parts(self.norm(mid))
        hidden = self.act(fc1_frozen if fc1_update is None else fc1_frozen + fc1_update)
        fc2_frozen, fc2_update = self.fc2.parts(hidden)
        out = mid + fc2_frozen if fc2_update is None else mid + fc2_frozen + fc2_update
        return out, SharedPass(context, proj_update, mid, fc1_frozen, fc2_frozen)

    def task_output(self, kept: SharedPass, copies: int) -> torch.Tensor:
        """Each task's output of this block, (copies·N, H, W, C), from ``copies`` task-major
        copies of the shared pass (1 in the per-task loop, T in the task-batched pass)."""
        kept = kept.repeated(copies)
        # x_mid holds the projection's task-agnostic update; a task's stream holds its own.
        attended = kept.mid if kept.proj_update is None else kept.mid - kept.proj_update
        attended = attended + self.proj.task_update(kept.context)
        hidden = kept.fc1_frozen + self.fc1.task_update(self.norm(attended))
        return attended + kept.fc2_frozen + self.fc2.task_update(self.act(hidden))


@register_method
class MTLoRA(Method):
    """Task-agnostic and task-specific LoRA with per-task taps (module doc)."""

    name = "mtlora"
    description = ("task-agnostic LoRA in every block, task-specific LoRA in each stage's last "
                   "block, per-task taps (MTLoRA)")
    published_name = "MTLoRA (r=16)"
    Config: ClassVar[type] = MTLoRAConfig
    task_specific_encoder = True
    # The published table has a row for each of these ranks, all else at the defaults.
    PUBLISHED_RANKS: ClassVar[dict[int, str]] = {16: "MTLoRA (r=16)", 64: "MTLoRA (r=64)"}

    @classmethod
    def published_row(cls, config: MTLoRAConfig) -> str | None:
        return published_row_by_rank(cls.Config, config, cls.PUBLISHED_RANKS)

    def attach(self, encoder: nn.Module) -> nn.Module:
        config = self.config
        sites = list(encoder.blocks())
        last = {site.stage: site for site in sites}
        # Each stage's last block, by layer. A plain dict: the modules belong to the encoder
        # and must not register twice.
        self._stage_ends: dict[int, StageEnd] = {}
        for site in sites:
            if last[site.stage] is site:
                self._stage_ends[site.layer] = self._attach_stage_end(encoder, site)
            else:
                for target in config.targets:
                    site.replace_linear(target, lambda base: AdaptedLinear(
                        base, self._update(encoder, base, shared=True)))
        unfreeze_extras(encoder, config)
        return encoder

    def _update(self, encoder: nn.Module, base: nn.Linear, shared: bool) -> LowRankUpdate:
        config = self.config
        if shared:
            return LowRankUpdate(encoder.task_context, base.in_features, base.out_features, 1,
                                 config.rank, config.shared_scale, config.dropout,
                                 ENCODER_SHARED)
        return LowRankUpdate(encoder.task_context, base.in_features, base.out_features,
                             len(self.tasks), config.task_rank, config.task_scale,
                             config.dropout, ENCODER_TASK_SPECIFIC)

    def _attach_stage_end(self, encoder: nn.Module, site: BlockSite) -> StageEnd:
        config = self.config

        def adapted(base: nn.Linear, target: str) -> AdaptedLinear:
            shared = self._update(encoder, base, True) if target in config.targets else None
            tasks = (self._update(encoder, base, False)
                     if target in config.task_targets else None)
            return AdaptedLinear(base, shared, tasks)

        if "attn.qkv" in config.targets:
            site.replace_linear("attn.qkv", lambda base: adapted(base, "attn.qkv"))
        for target in ("mlp.fc1", "mlp.fc2"):
            site.replace_linear(target, lambda base, t=target: adapted(base, t))
        proj = adapted(site.linear("attn.proj"), "attn.proj")
        site.replace_linear("attn.proj", lambda base: nn.Identity())
        site.add_after_attention(proj)
        return StageEnd(site, proj)

    def encode(self, encoder: nn.Module, images: torch.Tensor) -> TaskFeatures:
        return encode_with_stage_ends(encoder, images, self._stage_ends, self.tasks,
                                      self.execution)


class StageEndPass(Protocol):
    """A stage's last block run in two parts (MTLoRA's and DiTASK's ``StageEnd``)."""

    stage: int

    def shared_pass(self, x: torch.Tensor) -> tuple[torch.Tensor, Any]:
        """The block's shared output, and what its task branch needs."""

    def task_output(self, kept: Any, copies: int) -> torch.Tensor:
        """The tasks' outputs (copies·N, H, W, C) from what ``shared_pass`` kept."""


def encode_with_stage_ends(encoder: SwinEncoder, images: torch.Tensor,
                           stage_ends: dict[int, StageEndPass], tasks: tuple[str, ...],
                           execution: Execution) -> TaskFeatures:
    """The shared stream once, then the task branch of each stage's last block (by layer)
    per task (loop) or for all tasks at once (batched), each through the stage's patch
    merging, as the encoder taps a stage's output."""
    kept: dict[int, Any] = {}

    def block(module: nn.Module, layer: int, x: torch.Tensor) -> torch.Tensor:
        if layer not in stage_ends:
            return module(x)
        x, kept[layer] = stage_ends[layer].shared_pass(x)
        return x

    encoder.taps(images, block=block)

    def taps(task: int | None) -> list[torch.Tensor]:
        copies = 1 if task is not None else len(tasks)
        return [encoder.stage_tap(end.stage, end.task_output(kept[layer], copies))
                .permute(0, 3, 1, 2) for layer, end in stage_ends.items()]

    return per_task(encoder.task_context, tasks, execution, taps)


def published_row_by_rank(defaults: type, config: Any, rows: dict[int, str]) -> str | None:
    """The published row of a method published at several ranks (``rows``), when ``config``
    is the default one but for its ``rank``."""
    if dataclasses.replace(config, rank=defaults().rank) != defaults():
        return None
    return rows.get(config.rank)


def unfreeze_extras(encoder: SwinEncoder, config: StageEndConfig) -> None:
    """What MTLoRA (and TADFormer and DiTASK, whose code builds on its) trains besides its
    adapted linears, all shared by the tasks, as the config's ``train_*`` options say."""
    if config.train_patch_embed:
        encoder.patch_embedding().requires_grad_(True)
    if config.train_layer_norms:
        for _, norm in encoder.layers_of(nn.LayerNorm):
            norm.requires_grad_(True)
    if config.train_position_bias:
        for table in encoder.position_bias_tables():
            table.requires_grad_(True)
    if config.train_patch_merging:
        for merging in encoder.patch_mergings():
            merging.requires_grad_(True)
