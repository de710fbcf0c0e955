"""LoRA (Hu et al., ICLR 2022): a trainable low-rank update B·A beside frozen Linear layers.

Defaults follow the paper: rank 4, alpha = rank (the paper sets α to the first r it tries
and does not tune it, so the update is scaled by 1), B zero-initialised so training starts
from the frozen model, no dropout. The target is the attention input projection: the paper
adapts W_q and W_v, which Swin fuses with W_k into one ``attn.qkv`` Linear, so the default
adapts all three. ``targets`` may name any of ``attn.qkv``, ``attn.proj``, ``mlp.fc1``,
``mlp.fc2`` of every block.

Multi-task form: one A, B pair per task and layer (``shared=true``: one pair for all tasks).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import nn

from methods.adapter_layers import weight_sets_group
from methods.lora_layers import LoRALinear, LowRankUpdate
from pebench.backbones import BRANCH_LINEARS
from pebench.method import SharableMethod, SharingConfig, register_method
from pebench.options import option


@dataclass
class LoRAConfig(SharingConfig):
    rank: int = option(4, "rank r of each update B·A")
    alpha: float = option(4.0, "the update is scaled by alpha / rank")
    dropout: float = option(0.0, "dropout on the input of each update")
    targets: tuple[str, ...] = option(("attn.qkv",), "comma-separated block linears to "
                                                     "adapt (attn.qkv, attn.proj, mlp.fc1, "
                                                     "mlp.fc2)")

    def __post_init__(self) -> None:
        if self.rank < 1:
            raise ValueError(f"rank must be ≥ 1, got {self.rank}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        unknown = [t for t in self.targets if t not in BRANCH_LINEARS]
        if unknown or not self.targets:
            raise ValueError(f"targets {','.join(self.targets) or '(none)'} must be among "
                             f"{', '.join(BRANCH_LINEARS)}")


@register_method
class LoRA(SharableMethod):
    """Low-rank updates of the block Linears (module doc)."""

    name = "lora"
    description = "low-rank B·A beside the attention qkv projection (one pair per task)"
    published_name = "LoRA"
    Config: ClassVar[type] = LoRAConfig

    def attach(self, encoder: nn.Module) -> nn.Module:
        config = self.config
        for site in encoder.blocks():
            for target in config.targets:
                site.replace_linear(target, lambda base: LoRALinear(base, LowRankUpdate(
                    encoder.task_context, base.in_features, base.out_features, self.num_sets,
                    config.rank, config.alpha / config.rank, config.dropout,
                    weight_sets_group(config.shared))))
        return encoder
