"""DiTASK (Mantri et al., CVPR 2025): every frozen weight matrix keeps its singular vectors;
its singular values are resampled along a learnt 1-D diffeomorphism (a CPA flow,
``methods/cpa.py``), one shared by the tasks in every block and one per task in the last
block of each stage.

What the method is, as established from the paper and its released code (ipsitmantri/DiTASK,
``models/lora.py``: ``DiTASKLinear``; ``configs/ditask/ditask_tiny_448_r64.yaml``):

* **The warped linear.** For a frozen W = U·diag(σ)·Vᵀ, the layer computes
  ``x·(U·diag(σ ∘ T_θ)·Vᵀ)ᵀ + b``, where σ ∘ T_θ is σ, as a sequence over its index, resampled
  along the flow T_θ of a CPA velocity field with ``cells`` cells on [0, 1] (zero at both
  ends; θ has cells - 1 entries). The warped weight *replaces* the frozen one; nothing is
  added. The qkv matrix is warped as three square blocks (q, k, v), each with its own
  singular vectors and the same θ, as the code does.
* **Shared warps** (θ of 63 entries: the config's R = 64 cells) on qkv, proj, fc1 and fc2 of
  every block. **Task warps** (R_PER_TASK = 4 cells: 3 entries per task) on proj, fc1 and fc2
  of the last block of each stage, warping the same frozen W. The released repository lacks
  its Swin model file (``models/swin_transformer_ditask.py`` is imported but absent); its
  config keys are MTLoRA's (INTERMEDIATE_SPECIALIZATION false, per-task ranks), and
  ``DiTASKLinear`` returns a shared and a per-task output as MTLoRA's layer does, so the
  layout is MTLoRA's: the shared stream runs through every block; in each stage's last
  block each task t computes ``a_t = x + proj_t(z)`` (z the shared attention output),
  ``out_t = a_t + fc2_t(GELU(fc1_t(norm2(a_t))))`` with its own warped weights, and its
  stage output goes through the stage's patch merging to become its tap.
* **Initialisation**: θ Kaiming-uniform (a = √5), as the code initialises it, so the
  model does not start as the frozen one: each θ_i ~ U(±1/√(cells - 1)) (θ = 0 is the
  identity).
* **Also trained** (``mark_only_lora_as_trainable`` with the repository's defaults): the patch
  embedding, every LayerNorm, the relative-position bias tables and the patch-merging
  reductions, as for MTLoRA (``train_*``).

Choices of ours: the code's dropout (0.05) acts on every warped linear's input, the task
inputs included (the code does not drop the task inputs of fc1 and fc2); stochastic depth
off (the code uses 0.2), as for every pebench method; the harness learning rate 1e-3, as
for MTLoRA, on whose recipe the code builds. The singular value decompositions of the
frozen weights are taken once, when the method is attached (after the weights are loaded),
at the weights' precision, and kept as buffers that no checkpoint stores; the warped weight
is the frozen one plus U·diag(σ∘T - σ)·Vᵀ, so their rounding enters only through the
change. The warped weights depend on θ alone, so ``prepare()`` forms them once per step
and once per evaluation, as the hypernetwork methods emit theirs.

By the method's design the shared warps of the very last block's proj, fc1 and fc2 get no
gradient: they only change the shared stream's final output, which feeds no tap (every
last-stage tap is a task's own output), as MTLoRA's last shared fc2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from methods.cpa import warp_values
from methods.mtlora import StageEndConfig, encode_with_stage_ends, unfreeze_extras
from pebench.backbones import BlockSite
from pebench.method import Method, TaskFeatures, register_method
from pebench.options import option
from pebench.params import ENCODER_SHARED, ENCODER_TASK_SPECIFIC
from pebench.task_context import TaskContext

TASK_LINEARS = ("attn.proj", "mlp.fc1", "mlp.fc2")


@dataclass
class DiTASKConfig(StageEndConfig):
    cells: int = option(64, "cells of each shared warp's velocity field (the paper's r)")
    task_cells: int = option(4, "cells of each task warp in the last block of each stage")
    dropout: float = option(0.05, "dropout on the input of every warped linear")

    def __post_init__(self) -> None:
        for name in ("cells", "task_cells"):
            if getattr(self, name) < 2:
                raise ValueError(f"{name} must be ≥ 2 (a warp zero at both ends), got "
                                 f"{getattr(self, name)}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


class SpectralWarp(nn.Module):
    """``num_sets`` warps of one weight's singular values, each held as θ (cells - 1,),
    Kaiming-uniform as the code initialises its (1, cells - 1) parameter."""

    def __init__(self, cells: int, num_sets: int, group: str,
                 device: torch.device | None = None) -> None:
        super().__init__()
        self.param_group = group
        theta = torch.empty(num_sets, cells - 1, device=device)
        for row in theta:
            nn.init.kaiming_uniform_(row.unsqueeze(0), a=math.sqrt(5))
        self.theta = nn.Parameter(theta)


class WarpedLinear(nn.Module):
    """A frozen Linear whose weight is replaced by its shared warp, and, in the last block of
    a stage, by each task's warp in ``task_output`` (task-major inputs, TaskContext rules).
    The weight's decomposition, taken once here, serves both."""

    def __init__(self, base: nn.Linear, shared: SpectralWarp, dropout: float,
                 tasks: SpectralWarp | None = None, context: TaskContext | None = None) -> None:
        super().__init__()
        self.base = base
        self.shared = shared
        self.tasks = tasks
        self.context = context
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        weight = base.weight.detach()
        out_features, in_features = weight.shape
        blocks = out_features // in_features if out_features % in_features == 0 else 1
        blocks = blocks if blocks in (2, 3) else 1  # (k, v) or (q, k, v) warped apart
        chunks = weight.reshape(blocks, -1, in_features)
        if weight.is_meta:  # counting parameters: shapes only
            rank = min(chunks.shape[1:])
            u = torch.empty(blocks, chunks.shape[1], rank, device="meta")
            s = torch.empty(blocks, rank, device="meta")
            vh = torch.empty(blocks, rank, in_features, device="meta")
        else:
            u, s, vh = torch.linalg.svd(chunks, full_matrices=False)
        self.register_buffer("u", u, persistent=False)
        self.register_buffer("s", s, persistent=False)
        self.register_buffer("vh", vh, persistent=False)
        self._weights: tuple[torch.Tensor, torch.Tensor | None] | None = None

    def prepare(self) -> None:
        """Form the warped weights once per step (and once per evaluation): they depend on θ
        alone, not on the input."""
        tasks = None if self.tasks is None else self.warped(self.tasks).transpose(1, 2)
        self._weights = (self.warped(self.shared)[0], tasks)

    def prepared(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self._weights is None:
            raise RuntimeError("the warped weights were never formed: call model.prepare() "
                               "before the forward pass")
        return self._weights

    def warped(self, warp: SpectralWarp) -> torch.Tensor:
        """The warped matrices (sets, out, in), written as the frozen weight plus
        U·diag(σ∘T - σ)·Vᵀ: exactly the frozen weight where T is the identity, and the
        decomposition's rounding enters only through the change."""
        change = warp_values(self.s, warp.theta) - self.s  # (sets, blocks, rank)
        matrices = (self.u * change.unsqueeze(-2)) @ self.vh  # (sets, blocks, out/blocks, in)
        return self.base.weight + matrices.flatten(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(self.dropout(x), self.prepared()[0], self.base.bias)

    def task_output(self, x: torch.Tensor) -> torch.Tensor:
        weights = self.prepared()[1]  # (tasks, in, out)
        assert weights is not None and self.context is not None
        bias = self.base.bias
        biases = None if bias is None else bias.expand(weights.shape[0], -1)
        return self.context.linear(self.dropout(x), weights, biases)


class StageEnd:
    """The last block of a stage under DiTASK (module doc): ``shared_pass`` runs the shared
    stream and keeps the block's input and attention output; ``task_output`` runs each
    task's stream from them. The attention projection is moved after the window merging
    (``attn.proj`` is the identity), so that z is in image layout; the projection is
    token-wise, so the move changes only the order in which rows are computed."""

    def __init__(self, site: BlockSite, proj: WarpedLinear) -> None:
        self.site = site
        self.stage = site.stage
        self.proj = proj
        self.norm = site.submodule("norm2")
        self.mlp = site.submodule("mlp")

    def shared_pass(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        context = self.site.attention_branch(x)
        mid = x + self.proj(context)
        return mid + self.mlp(self.norm(mid)), (x, context)

    def task_output(self, kept: tuple[torch.Tensor, ...], copies: int) -> torch.Tensor:
        x, context = (t.repeat(copies, 1, 1, 1) for t in kept)
        attended = x + self.proj.task_output(context)
        mlp = self.mlp
        hidden = mlp.act(mlp.fc1.task_output(self.norm(attended)))
        return attended + mlp.fc2.task_output(hidden)


@register_method
class DiTASK(Method):
    """Singular values warped by learnt diffeomorphisms, shared in every block and per task
    in each stage's last block (module doc)."""

    name = "ditask"
    description = ("frozen weights' singular values warped by learnt 1-D diffeomorphisms, "
                   "shared in every block, per task in each stage's last block (DiTASK)")
    Config: ClassVar[type] = DiTASKConfig
    task_specific_encoder = True

    def attach(self, encoder: nn.Module) -> nn.Module:
        sites = list(encoder.blocks())
        last = {site.stage: site for site in sites}
        self._stage_ends: dict[int, StageEnd] = {}  # by layer; the modules are the encoder's
        self._linears: list[WarpedLinear] = []  # a plain list, for the same reason
        for site in sites:
            stage_end = last[site.stage] is site
            for target in ("attn.qkv", *TASK_LINEARS):
                warped = self._warped(encoder, site.linear(target),
                                      stage_end and target in TASK_LINEARS)
                if stage_end and target == "attn.proj":
                    site.replace_linear(target, lambda base: nn.Identity())
                    site.add_after_attention(warped)
                    self._stage_ends[site.layer] = StageEnd(site, warped)
                else:
                    site.replace_linear(target, lambda base, w=warped: w)
        unfreeze_extras(encoder, self.config)
        return encoder

    def _warped(self, encoder: nn.Module, base: nn.Linear, task_specific: bool) -> WarpedLinear:
        config, device = self.config, base.weight.device
        shared = SpectralWarp(config.cells, 1, ENCODER_SHARED, device)
        tasks = (SpectralWarp(config.task_cells, len(self.tasks), ENCODER_TASK_SPECIFIC, device)
                 if task_specific else None)
        linear = WarpedLinear(base, shared, config.dropout, tasks, encoder.task_context)
        self._linears.append(linear)
        return linear

    def prepare(self) -> None:
        for linear in self._linears:
            linear.prepare()

    def encode(self, encoder: nn.Module, images: torch.Tensor) -> TaskFeatures:
        return encode_with_stage_ends(encoder, images, self._stage_ends, self.tasks,
                                      self.execution)
