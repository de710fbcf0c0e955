"""Swin backbones from timm: the factory, the multi-scale feature taps, and the block surface.

Methods never dig into timm internals on their own; they go through ``SwinEncoder.blocks()``
(a ``BlockSite`` per transformer block), ``SwinEncoder.patch_mergings()``, the layer
accessors (``layers_of``, ``patch_embedding``, ``position_bias_tables``) and
``SwinEncoder.prompted_taps`` (prompt tokens, ``pebench/prompted_swin.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from timm.models.swin_transformer import SwinTransformer, SwinTransformerBlock
from torch import nn

from pebench.prompted_swin import FreshPrompts, PromptedPass
from pebench.registry import Registry
from pebench.task_attention import TaskWindowAttention
from pebench.task_context import TaskContext

# Steps of SwinEncoder.taps: a block run on tokens x (N, H, W, C) given its layer index, a
# patch merging run on x.
BlockStep = Callable[[SwinTransformerBlock, int, torch.Tensor], torch.Tensor]
MergeStep = Callable[[nn.Module, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class BackboneSpec:
    """A Swin configuration. ``timm_variant`` names the timm model it equals, if any."""

    name: str
    description: str
    embed_dim: int
    depths: tuple[int, ...]
    num_heads: tuple[int, ...]
    window_size: int
    patch_size: int = 4
    default_img_size: int = 448
    timm_variant: str | None = None
    embedded_weights: bool = False
    # Decoder projection widths: HRNet-W18's (18, 36, 72, 144), the published head, for the
    # real backbones; swin-nano scales them with its embedding width (32/96) so that the
    # heads do not outweigh a 2.3M-parameter encoder on a CPU.
    decoder_widths: tuple[int, ...] = (18, 36, 72, 144)

    @property
    def stage_dims(self) -> tuple[int, ...]:
        return tuple(self.embed_dim * 2**i for i in range(len(self.depths)))

    @property
    def tap_channels(self) -> tuple[int, ...]:
        """Channels of the taps after each stage's patch merging (original Swin stage layout)."""
        dims = self.stage_dims
        return (*dims[1:], dims[-1])

    @property
    def tap_strides(self) -> tuple[int, ...]:
        strides = [self.patch_size * 2**i for i in range(1, len(self.depths))]
        return (*strides, strides[-1])


BACKBONES: Registry[BackboneSpec] = Registry("backbone", entry_point_group="pebench.backbones")

for _spec in (
    BackboneSpec("swin-t", "Swin-T (28M), timm swin_tiny_patch4_window7_224 built at 448",
                 96, (2, 2, 6, 2), (3, 6, 12, 24), 7, timm_variant="swin_tiny_patch4_window7_224"),
    BackboneSpec("swin-s", "Swin-S (50M), timm swin_small_patch4_window7_224 built at 448",
                 96, (2, 2, 18, 2), (3, 6, 12, 24), 7,
                 timm_variant="swin_small_patch4_window7_224"),
    BackboneSpec("swin-b", "Swin-B (88M), timm swin_base_patch4_window7_224 built at 448",
                 128, (2, 2, 18, 2), (4, 8, 16, 32), 7,
                 timm_variant="swin_base_patch4_window7_224"),
    BackboneSpec("swin-nano", "Swin-nano (2.3M): embed 32, depths 2-2-2-2, window 3, for CPUs; "
                 "embedded weights from a synthetic pretext task",
                 32, (2, 2, 2, 2), (1, 2, 4, 8), 3, default_img_size=96, embedded_weights=True,
                 decoder_widths=(6, 12, 24, 48)),
):
    BACKBONES.add(_spec.name, _spec, _spec.description)


BRANCH_LINEARS = ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2")


class BranchOutput(nn.Module):
    """Stands in for a block's drop-path module to transform a residual branch's output.

    timm's block computes ``x + drop_path1(attn_branch)`` and ``x + drop_path2(mlp_branch)``,
    so modules placed here act exactly after the attention (resp. MLP) sub-layer and before
    the residual addition: the Houlsby/Pfeiffer adapter position. Modules see (..., C) tensors
    whose leading dimension is task-major in a task-batched pass.
    """

    def __init__(self, drop_path: nn.Module) -> None:
        super().__init__()
        self.drop_path = drop_path
        self.modules_after = nn.ModuleList()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for module in self.modules_after:
            x = module(x)
        return self.drop_path(x)


@dataclass
class BlockSite:
    """One Swin block as methods see it."""

    stage: int
    index: int  # within the stage
    layer: int  # across the whole encoder, 0-based
    dim: int
    block: SwinTransformerBlock

    def linear(self, name: str) -> nn.Module:
        """One of ``attn.qkv``, ``attn.proj``, ``mlp.fc1``, ``mlp.fc2`` (possibly wrapped)."""
        _check_linear_name(name)
        return self.block.get_submodule(name)

    def replace_linear(self, name: str, make: Callable[[nn.Module], nn.Module]) -> nn.Module:
        """Replace a branch Linear by ``make(current)``; returns the new module."""
        _check_linear_name(name)
        parent_name, _, child = name.rpartition(".")
        parent = self.block.get_submodule(parent_name)
        new = make(getattr(parent, child))
        setattr(parent, child, new)
        return new

    def submodule(self, name: str) -> nn.Module:
        """One of the block's sub-layers: ``norm1``, ``attn``, ``norm2``, ``mlp``."""
        _check_submodule_name(name)
        return self.block.get_submodule(name)

    def replace_submodule(self, name: str, make: Callable[[nn.Module], nn.Module]) -> nn.Module:
        """Replace a sub-layer (``norm1``, ``attn``, ``norm2``, ``mlp``) by ``make(current)``;
        returns the new module."""
        _check_submodule_name(name)
        new = make(getattr(self.block, name))
        setattr(self.block, name, new)
        return new

    def attention_branch(self, x: torch.Tensor) -> torch.Tensor:
        """The attention sub-layer on tokens x (N, H, W, C) before its residual addition:
        ``norm1``, the (shifted) window attention, the windows merged back (N, H, W, C). For
        methods that run a block's steps themselves (MTLoRA's task branches)."""
        return self.block._attn(self.block.norm1(x))

    def add_after_attention(self, module: nn.Module) -> None:
        _branch(self.block, "drop_path1").modules_after.append(module)

    def add_after_mlp(self, module: nn.Module) -> None:
        _branch(self.block, "drop_path2").modules_after.append(module)


BLOCK_SUBMODULES = ("norm1", "attn", "norm2", "mlp")


def _check_submodule_name(name: str) -> None:
    if name not in BLOCK_SUBMODULES:
        raise ValueError(f"unknown block sub-layer '{name}'; valid: "
                         f"{', '.join(BLOCK_SUBMODULES)}")


def _check_linear_name(name: str) -> None:
    if name not in BRANCH_LINEARS:
        raise ValueError(f"unknown block linear '{name}'; valid: {', '.join(BRANCH_LINEARS)}")


def _branch(block: SwinTransformerBlock, attr: str) -> BranchOutput:
    current = getattr(block, attr)
    if not isinstance(current, BranchOutput):
        current = BranchOutput(current)
        setattr(block, attr, current)
    return current


class SwinEncoder(nn.Module):
    """A timm Swin without its classifier, returning the four feature taps (NCHW).

    Taps follow the published protocol: the output of each stage *after its patch merging* in
    the original Swin layout (blocks then merging), i.e. 192/384/768/768 channels at strides
    8/16/32/32 for Swin-T. timm merges at the start of a stage instead, so the taps are the
    outputs of ``layers[1..3].downsample`` and of the last stage. The final LayerNorm and the
    head feed no tap, so they are removed rather than left as dead parameters.
    """

    def __init__(self, spec: BackboneSpec, img_size: int) -> None:
        super().__init__()
        self.spec = spec
        self.img_size = img_size
        self.model = SwinTransformer(
            img_size=img_size,
            patch_size=spec.patch_size,
            embed_dim=spec.embed_dim,
            depths=spec.depths,
            num_heads=spec.num_heads,
            window_size=spec.window_size,
            num_classes=0,
            # Stochastic depth is off: frozen-backbone methods would otherwise train through a
            # randomly dropped frozen network, and runs must be exactly reproducible.
            drop_path_rate=0.0,
        )
        self.model.norm = nn.Identity()
        self.model.head = nn.Identity()
        self.task_context = TaskContext()

    @property
    def tap_channels(self) -> tuple[int, ...]:
        return self.spec.tap_channels

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        return self.taps(images)

    def taps(self, images: torch.Tensor, block: BlockStep | None = None,
             merge: MergeStep | None = None) -> list[torch.Tensor]:
        """The four taps (NCHW): the patch embedding, then each stage's blocks, each block
        through ``block(block, layer, x)`` (default: the block itself), then the stage's tap
        (``stage_tap``: its patch merging through ``merge(merging, x)``, default the merging),
        which the next stage continues from."""
        x = self.model.patch_embed(images)
        taps = []
        layer = 0
        for index, stage in enumerate(self.model.layers):
            for module in stage.blocks:
                x = block(module, layer, x) if block else module(x)
                layer += 1
            x = self.stage_tap(index, x, merge)  # also the next stage's input
            taps.append(x.permute(0, 3, 1, 2))
        return taps

    def stage_tap(self, stage: int, x: torch.Tensor,
                  merge: MergeStep | None = None) -> torch.Tensor:
        """The tap of ``stage`` from its output tokens x (N, H, W, C), still NHWC: x through
        the stage's patch merging (``merge(merging, x)`` if given), the last stage's x as it
        is. timm keeps the merging at the start of the next stage, hence ``stage + 1``."""
        if stage + 1 == len(self.model.layers):
            return x
        merging = self.model.layers[stage + 1].downsample
        return merge(merging, x) if merge else merging(x)

    def prompted_taps(self, images: torch.Tensor, fresh: FreshPrompts) -> list[torch.Tensor]:
        """The taps of the frozen Swin run with prompt tokens (VPT): ``fresh(layer, N)`` gives
        the prompts (N, P, C) that join before the block of ``layer``, or None to carry the
        previous block's on (``pebench/prompted_swin.py`` holds the rules)."""
        prompted = PromptedPass(fresh)
        return self.taps(images, prompted.block, prompted.merge)

    def blocks(self) -> Iterator[BlockSite]:
        layer = 0
        for stage_index, stage in enumerate(self.model.layers):
            for index, block in enumerate(stage.blocks):
                yield BlockSite(stage_index, index, layer, self.spec.stage_dims[stage_index], block)
                layer += 1

    def replace_module(self, name: str, make: Callable[[nn.Module], nn.Module]) -> nn.Module:
        """Replace the timm model's submodule ``name`` (a name of ``model.named_modules()``) by
        ``make(current)``: for methods that adapt layers outside the block surface, such as
        BitFit's biases or per-task layer norms. Returns the new module."""
        parent_name, _, child = name.rpartition(".")
        parent = self.model.get_submodule(parent_name)
        new = make(getattr(parent, child))
        setattr(parent, child, new)
        return new

    def layers_of(self, kind: type | tuple[type, ...]) -> list[tuple[str, nn.Module]]:
        """Every layer of the backbone of type ``kind``, with the name ``replace_module``
        takes: BitFit's biased layers, the layer norms that methods train per task."""
        return [(name, module) for name, module in self.model.named_modules()
                if isinstance(module, kind)]

    def patch_embedding(self) -> nn.Module:
        """The patch embedding (convolution and norm)."""
        return self.model.patch_embed

    def position_bias_tables(self) -> list[nn.Parameter]:
        """Every block's relative-position bias table."""
        return [site.block.attn.relative_position_bias_table for site in self.blocks()]

    def position_bias_per_task(self, num_sets: int, param_group: str) -> None:
        """Give every block ``num_sets`` trainable copies of its relative-position bias table
        (``pebench/task_attention.py``), counted in ``param_group``."""
        for site in self.blocks():
            site.replace_submodule("attn", lambda attn: TaskWindowAttention(
                attn, self.task_context, num_sets, param_group))

    def patch_mergings(self) -> list[nn.Module]:
        """The patch-merging layers, in order (stages 1..3 in timm's layout)."""
        return [stage.downsample for stage in self.model.layers
                if not isinstance(stage.downsample, nn.Identity)]

    def backbone_state_dict(self) -> dict[str, torch.Tensor]:
        """The pretrained weights in timm key format (what ``load_weights`` reads back)."""
        return {k: v.detach().clone() for k, v in self.model.state_dict().items()}
