"""Bottleneck adapters: Houlsby, Pfeiffer and VL-Adapter.

* ``adapter`` (Houlsby et al., ICML 2019): a bottleneck adapter after the attention and
  after the MLP sub-layer of every block, before the residual addition, and the layer norms
  trained too (Sec. 3: "we also train the layer normalization parameters").
* ``pfeiffer-adapter`` (Pfeiffer et al., EACL 2021, AdapterFusion Sec. 3 and its AdapterHub
  configuration): one adapter after the MLP sub-layer only, ReLU, reduction 16, layer norms
  frozen.
* ``vl-adapter`` (Sung et al., CVPR 2022): the Houlsby placement with a single adapter set
  shared by every task, so the encoder runs once for all of them.

Multi-task form: ``adapter`` and ``pfeiffer-adapter`` give each task its own adapters (and
layer norms); ``shared=true`` shares one set, which for ``adapter`` is VL-Adapter.

Choices where the papers fix no value for a Swin (documented hyperparameters):

* the bottleneck is d / ``reduction`` in every stage (the papers give absolute sizes for a
  single-width transformer); ``reduction`` = 4 for Houlsby and VL-Adapter (BERT-large's
  bottleneck 256 = 1024 / 4 is in Houlsby's sweep), 16 for Pfeiffer (its paper's value);
* GELU inside Houlsby and VL-Adapter adapters (the nonlinearity of the backbone and of the
  original adapter code), ReLU for Pfeiffer;
* Houlsby's initialisation for all three: both projections from a normal of std
  ``init_std`` = 0.01 truncated at two std, biases zero: near-identity, not identity;
* "layer norms" are all of the encoder's LayerNorms: both per block, the patch-merging
  norms and the patch-embedding norm (``train_layer_norms``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import nn

from methods.adapter_layers import (
    Activation,
    BottleneckAdapter,
    Placement,
    adapter_slots,
    check_reduction,
)
from methods.task_layers import layer_norms_per_task
from pebench.method import SharableMethod, SharingConfig, register_method
from pebench.options import option


@dataclass
class AdapterConfig(SharingConfig):
    reduction: int = option(4, "bottleneck width d / reduction in every stage")
    activation: Activation = option("gelu", "nonlinearity inside the adapter")
    init_std: float = option(0.01, "std of both projections' truncated-normal init "
                                   "(0: exactly the identity)")
    train_layer_norms: bool = option(True, "also train the encoder's layer norms (a copy "
                                           "per weight set)")

    def __post_init__(self) -> None:
        if self.reduction < 1:
            raise ValueError(f"reduction must be ≥ 1, got {self.reduction}")
        if self.init_std < 0:
            raise ValueError(f"init_std must be ≥ 0, got {self.init_std}")


@dataclass
class PfeifferConfig(AdapterConfig):
    reduction: int = 16
    activation: Activation = "relu"
    train_layer_norms: bool = False


@dataclass
class VLAdapterConfig(AdapterConfig):
    shared: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.shared:
            raise ValueError("VL-Adapter shares one adapter set by definition; for per-task "
                             "adapters use the method 'adapter'")


class BottleneckAdapters(SharableMethod):
    """Adapters at ``placement`` of every block, optionally with trainable layer norms."""

    Config: ClassVar[type] = AdapterConfig
    placement: ClassVar[Placement] = "both"

    def attach(self, encoder: nn.Module) -> nn.Module:
        config = self.config
        check_reduction(encoder.spec, config.reduction)
        for site in encoder.blocks():
            for add in adapter_slots(site, self.placement):
                add(BottleneckAdapter(encoder.task_context, site.dim,
                                      site.dim // config.reduction, self.num_sets, config.shared,
                                      config.activation, config.init_std))
        if config.train_layer_norms:
            layer_norms_per_task(encoder, self.num_sets, config.shared)
        return encoder


@register_method
class HoulsbyAdapter(BottleneckAdapters):
    """Houlsby adapters after both sub-layers, layer norms trained (module doc)."""

    name = "adapter"
    description = "Houlsby bottleneck adapters after attention and MLP (one set per task)"
    published_name = "Adapter"


@register_method
class PfeifferAdapter(BottleneckAdapters):
    """One adapter after the MLP sub-layer (module doc)."""

    name = "pfeiffer-adapter"
    description = "one bottleneck adapter after the MLP sub-layer (one set per task)"
    Config: ClassVar[type] = PfeifferConfig
    placement = "mlp"


@register_method
class VLAdapter(BottleneckAdapters):
    """Houlsby adapters shared by all tasks (module doc)."""

    name = "vl-adapter"
    description = "Houlsby adapters shared by all tasks (the encoder runs once)"
    published_name = "VL-Adapter"
    Config: ClassVar[type] = VLAdapterConfig
