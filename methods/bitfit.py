"""BitFit (Ben Zaken et al., ACL 2022): train only the bias terms of the encoder.

"Bias terms" are the additive biases of the encoder's layers, as in the paper's Eq. 1–3: the
query/key/value projection (Swin fuses them in ``attn.qkv``), the attention output
projection, both MLP layers, and every LayerNorm's shift β; in a Swin also the patch
embedding convolution's bias. Also included by default
(``position_bias``): every block's relative-position bias table, as BitFit implementations
that train every parameter whose name contains "bias" do; the BitFit paper has no such
parameter, and the published Swin count (2.85M with the 0.60M every published row carries)
is met only with them (4 × 23,322 for Swin-T's tables). ``--set position_bias=false`` keeps
the layers' bias terms alone. Not included: LayerNorm scales γ.

Multi-task form: every task gets its own copy of all bias terms, initialised from the
pretrained ones (``shared=true``: one copy trained by all tasks).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from methods.adapter_layers import weight_sets_group
from methods.task_layers import TaskBias
from pebench.method import SharableMethod, SharingConfig, register_method
from pebench.options import option


@dataclass
class BitFitConfig(SharingConfig):
    position_bias: bool = option(True, "also train every block's relative-position bias "
                                       "table (a copy per weight set)")


@register_method
class BitFit(SharableMethod):
    """Bias terms only (module doc)."""

    name = "bitfit"
    description = "train only the encoder's bias terms (one copy per task)"
    published_name = "BitFit"
    Config: ClassVar[type] = BitFitConfig

    def attach(self, encoder: nn.Module) -> nn.Module:
        with_bias = [(name, module)
                     for name, module in encoder.layers_of((nn.Linear, nn.LayerNorm, nn.Conv2d))
                     if isinstance(module.bias, torch.Tensor)]
        for name, module in with_bias:
            channel_dim = 1 if isinstance(module, nn.Conv2d) else -1
            encoder.replace_module(name, lambda m, d=channel_dim: TaskBias(
                m, encoder.task_context, self.num_sets, self.config.shared, d))
        if self.config.position_bias:
            encoder.position_bias_per_task(self.num_sets, weight_sets_group(self.config.shared))
        return encoder
