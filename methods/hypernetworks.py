"""Hypernetwork adapters: Hyperformer, Polyhistor and Polyhistor-Lite.

All three put the same residual bottleneck adapter (``GeneratedAdapter``: bottleneck
n = d / ``reduction``) after the attention and after the MLP sub-layer of every Swin block,
one weight set per task, and train only what generates those weights (plus the decoders).
They differ only in how the weights are generated, so their comparison isolates exactly that:

* **Hyperformer** (Karimi Mahabadi et al., ACL 2021): a learned task embedding, a layer
  embedding and an adapter-position embedding are concatenated and mapped by a shared task
  projector (an MLP) to a conditioning vector z; shared linear hypernetworks map z to every
  adapter weight and bias. One hypernetwork serves all layers, so in a Swin its output must
  hold the weights of the widest stage (d_max × n_max); a narrower stage reads the first
  d·n entries of that output as its d × n weight (a prefix: the papers leave open which part
  a narrower layer uses). That output layer is why the method explodes on hierarchical
  backbones.
* **Polyhistor** (Liu et al., NeurIPS 2022, Sec. 4.1, Decomposed HyperNetworks): each weight
  matrix is the product A·Bᵀ of two low-rank matrices A (d × k) and B (n × k), emitted by a
  pair of small hypernetworks from the same z, sized for the widest stage; a narrower stage
  takes the first rows of each factor, the top-left corner of the widest weight.
* **Polyhistor-Lite** (Sec. 4.2 and 4.3): the decomposed hypernetworks emit a Template Kernel
  of one size for all layers (the first stage's d₀ × n₀), and each layer owns Layer-wise
  Scaling Kernels of s × s, s = d / d₀ (×1, ×2, ×4, ×8 for the Swin stages), with
  W = Template ⊗ Scaling. Biases follow the same pattern (template vector ⊗ per-layer
  scaling vector).

Details the papers at hand leave open, chosen here and exposed as hyperparameters:

* adapters after both sub-layers (Houlsby placement), GELU inside the adapter;
* ``reduction`` = 2 (bottleneck d/2), the same for the three methods;
* embeddings of ``embedding_dim`` = 64, a projector 192 → ``projector_hidden`` (128) → ReLU
  → ``projected_dim`` (128), as in Hyperformer's task projector;
* Polyhistor's rank ``rank`` = 24; with the choices above it puts Polyhistor at 9.27M
  trainable parameters in the published setting (Swin-T, four PASCAL-Context tasks,
  decoders included; published 8.96M) and Hyperformer at 78.2M (published 72.77M);
* Polyhistor-Lite uses the same rank for its template kernels; its scaling kernels are
  shared by all tasks (the task enters through the template) and are initialised N(0, 1/s)
  so that the s copies of a template start different;
* Hyperformer++'s conditional layer norm is not generated: only the adapter weights are.

All generators are ``PrefixGenerator``s: one linear layer per method, its rows held in blocks
so that a narrow stage's prefix is computed without touching the rows only wider stages read.

Every adapter is the identity at initialisation: the generators of the up-projection (the
last factor B for Polyhistor, the up template for Polyhistor-Lite) and of its bias start at
zero, so W_up = 0 and the adapted encoder equals the frozen one. Weights are generated once
per step for every (task, layer, position) in ``prepare()``, never per sample.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import nn

from methods.adapter_layers import (
    AdapterWeights,
    GeneratedAdapter,
    LowRank,
    Weight,
    check_reduction,
)
from methods.prefix_generator import PrefixGenerator, Shape
from pebench.errors import PebenchError
from pebench.method import Method, option, register_method
from pebench.params import ENCODER_SHARED, OTHER

POSITIONS = ("attention", "mlp")


@dataclass
class HyperformerConfig:
    reduction: int = option(2, "bottleneck width d / reduction of the generated adapters")
    embedding_dim: int = option(64, "width of the task, layer and position embeddings")
    projector_hidden: int = option(128, "hidden width of the task projector")
    projected_dim: int = option(128, "width of the conditioning vector z the hypernetworks "
                                     "read")
    execution: Literal["batched", "loop"] = option("batched", "one task-batched pass "
                                                              "(batched) or one pass per task "
                                                              "(loop); same results")

    def __post_init__(self) -> None:
        for name in ("reduction", "embedding_dim", "projector_hidden", "projected_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be ≥ 1, got {getattr(self, name)}")


@dataclass
class PolyhistorConfig(HyperformerConfig):
    rank: int = option(24, "rank of the decomposed hypernetworks' factors")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.rank < 1:
            raise ValueError(f"rank must be ≥ 1, got {self.rank}")


class Conditioning(nn.Module):
    """Task, layer and adapter-position embeddings through the shared task projector:
    one conditioning vector per (task, layer, position), shape (T, L, P, projected_dim)."""

    param_group = OTHER

    def __init__(self, num_tasks: int, num_layers: int, config: HyperformerConfig) -> None:
        super().__init__()
        dim = config.embedding_dim
        self.task = nn.Embedding(num_tasks, dim)
        self.layer = nn.Embedding(num_layers, dim)
        self.position = nn.Embedding(len(POSITIONS), dim)
        self.projector = nn.Sequential(
            nn.Linear(3 * dim, config.projector_hidden), nn.ReLU(),
            nn.Linear(config.projector_hidden, config.projected_dim))

    def forward(self) -> torch.Tensor:
        tasks, layers, positions = (self.task.num_embeddings, self.layer.num_embeddings,
                                    self.position.num_embeddings)
        shape = (tasks, layers, positions, self.task.embedding_dim)
        joined = torch.cat([self.task.weight[:, None, None].expand(shape),
                            self.layer.weight[None, :, None].expand(shape),
                            self.position.weight[None, None, :].expand(shape)], dim=-1)
        return self.projector(joined)


def decomposed_shapes(adapters: Sequence[tuple[int, int]], rank: int) -> dict[str, list[Shape]]:
    """Polyhistor's Decomposed HyperNetworks for adapters of (rows d, bottleneck n), one
    shape per stage: pairs of hypernetworks emit A (d × k) and B (n × k) for the down weight
    A·Bᵀ (d × n) and A (n × k), B (d × k) for the up weight (n × d), and two more the biases.
    Every factor keeps its rank k as its last dimension, so a narrower stage's factors are the
    first rows of the widest stage's: the top-left corner of each weight."""
    return {"down_left": [(d, rank) for d, _ in adapters],
            "down_right": [(n, rank) for _, n in adapters],
            "down_bias": [(n,) for _, n in adapters],
            "up_left": [(n, rank) for _, n in adapters],
            "up_right": [(d, rank) for d, _ in adapters],
            "up_bias": [(d,) for d, _ in adapters]}


# The up-projection's generators start at zero: every adapter starts as the identity.
DECOMPOSED_ZERO_INIT = ("up_right", "up_bias")


def decomposed_weights(factors: tuple[torch.Tensor, ...],
                       keep_factors: bool = False) -> AdapterWeights:
    """The adapter weights (T, S, d, n), (T, S, n), (T, S, n, d), (T, S, d) from their
    factors (``decomposed_shapes`` order), formed, or with ``keep_factors`` as ``LowRank``
    pairs that the adapter applies without forming them."""
    down_left, down_right, down_bias, up_left, up_right, up_bias = factors
    if keep_factors:
        return LowRank(down_left, down_right), down_bias, LowRank(up_left, up_right), up_bias
    return down_left @ down_right.mT, down_bias, up_left @ up_right.mT, up_bias


def unbind_sites(weight: Weight) -> tuple[Weight, ...]:
    """A weight (T, S, ...) of S sites as S weights (T, ...), factors unbound alike."""
    if isinstance(weight, LowRank):
        return tuple(LowRank(left, right) for left, right in
                     zip(weight.left.unbind(1), weight.right.unbind(1), strict=True))
    return weight.unbind(1)


@dataclass
class _Site:
    layer: int
    position: int
    adapter: GeneratedAdapter


@dataclass
class _Stage:
    index: int
    dim: int
    bottleneck: int
    sites: list[_Site]


class HyperAdapterMethod(Method):
    """Shared machinery: insert the adapters, generate their weights once per step."""

    Config: ClassVar[type] = HyperformerConfig
    task_specific_encoder = True

    def attach(self, encoder: nn.Module) -> nn.Module:
        config = self.config
        dims = encoder.spec.stage_dims
        check_reduction(encoder.spec, config.reduction)
        stages = [_Stage(i, d, d // config.reduction, []) for i, d in enumerate(dims)]
        num_layers = 0
        for site in encoder.blocks():
            for position, add in enumerate((site.add_after_attention, site.add_after_mlp)):
                adapter = GeneratedAdapter(encoder.task_context, site.dim,
                                           site.dim // config.reduction)
                add(adapter)
                stages[site.stage].sites.append(_Site(site.layer, position, adapter))
            num_layers = site.layer + 1
        # A plain list: the adapters belong to the encoder and must not register twice.
        self._stages = [stage for stage in stages if stage.sites]
        self.conditioning = Conditioning(len(self.tasks), num_layers, config)
        self.build_generators()
        return encoder

    @property
    def sites_per_stage(self) -> list[int]:
        # Sites are numbered layer-major (layer · P + position), so z holds them stage after
        # stage.
        return [len(stage.sites) for stage in self._stages]

    def build_generators(self) -> None:
        raise NotImplementedError

    def generate(self, z: torch.Tensor) -> list[AdapterWeights]:
        """Every stage's weights from z of shape (T, all sites, projected_dim): (T, S, d, n),
        (T, S, n), (T, S, n, d), (T, S, d) for the S sites of the stage."""
        raise NotImplementedError

    def prepare(self) -> None:
        # Each generated tensor is unbound into its sites in one view: indexing every site
        # separately would allocate a zero gradient of the whole tensor per site.
        generated = self.generate(self.conditioning().flatten(1, 2))
        for stage, weights in zip(self._stages, generated, strict=True):
            per_site = [unbind_sites(w) for w in weights]
            for index, site in enumerate(stage.sites):
                site.adapter.set_weights(tuple(parts[index] for parts in per_site))


@register_method
class Hyperformer(HyperAdapterMethod):
    """Hyperformer for Swin: one shared hypernetwork emits every adapter weight (module doc)."""

    name = "hyperformer"
    description = "shared hypernetwork emits every task's and layer's adapter weights"
    published_name = "Hyperformer"

    def build_generators(self) -> None:
        stages = [(stage.dim, stage.bottleneck) for stage in self._stages]
        self.generator = PrefixGenerator(
            self.config.projected_dim,
            {"down": stages, "down_bias": [(n,) for _, n in stages],
             "up": [(n, d) for d, n in stages], "up_bias": [(d,) for d, _ in stages]},
            zero_init=("up", "up_bias"))

    def generate(self, z: torch.Tensor) -> list[AdapterWeights]:
        return self.generator(z, self.sites_per_stage)


@register_method
class Polyhistor(HyperAdapterMethod):
    """Polyhistor: decomposed hypernetworks emit low-rank factors (module doc)."""

    name = "polyhistor"
    description = "decomposed hypernetworks emit low-rank factors of every adapter weight"
    published_name = "Polyhistor"
    Config = PolyhistorConfig

    def build_generators(self) -> None:
        stages = [(stage.dim, stage.bottleneck) for stage in self._stages]
        self.generators = PrefixGenerator(self.config.projected_dim,
                                          decomposed_shapes(stages, self.config.rank),
                                          zero_init=DECOMPOSED_ZERO_INIT)

    def generate(self, z: torch.Tensor) -> list[AdapterWeights]:
        # A stage whose factors are thinner than its weights (rank · (d + n) < d · n: the
        # wide stages) applies them as they are; forming W would cost more in prepare() and
        # in every adapter's forward and backward pass.
        rank = self.config.rank
        return [decomposed_weights(factors, rank * (stage.dim + stage.bottleneck)
                                   < stage.dim * stage.bottleneck)
                for stage, factors in zip(self._stages, self.generators(z, self.sites_per_stage),
                                          strict=True)]


class ScalingKernels(nn.Module):
    """Polyhistor-Lite's per-layer scaling kernels: s × s matrices for the down and up weights
    and length-s vectors for the biases, one set per adapter; shared by all tasks, so they
    count as shared encoder parameters."""

    param_group = ENCODER_SHARED

    def __init__(self, num_sites: int, scale: int) -> None:
        super().__init__()
        std = scale ** -0.5
        self.down = nn.Parameter(torch.randn(num_sites, scale, scale) * std)
        self.up = nn.Parameter(torch.randn(num_sites, scale, scale) * std)
        self.down_bias = nn.Parameter(torch.ones(num_sites, scale))
        self.up_bias = nn.Parameter(torch.ones(num_sites, scale))


def kron_per_site(template: torch.Tensor, scaling: torch.Tensor) -> torch.Tensor:
    """Template (T, S, a, b) ⊗ scaling (S, s, s) → (T, S, a·s, b·s); vectors (T, S, a) ⊗ (S, s)
    → (T, S, a·s). Entry [i·s + u, j·s + v] is template[i, j] · scaling[u, v].

    Computed as outer products by a batched matrix product with an inner dimension of 1,
    then interleaved: the same values as a broadcast product, but backwards each factor's
    gradient is a matrix product instead of a broadcast multiply and a reduction (2× faster
    on a CPU)."""
    tasks, sites = template.shape[:2]
    s = scaling.shape[-1]
    if template.dim() == 3:
        a = template.shape[2]
        right = scaling.reshape(1, sites, 1, s).expand(tasks, sites, 1, s)
        return torch.matmul(template.unsqueeze(-1), right).reshape(tasks, sites, a * s)
    a, b = template.shape[2:]
    right = scaling.reshape(1, sites, 1, s * s).expand(tasks, sites, 1, s * s)
    outer = torch.matmul(template.reshape(tasks, sites, a * b, 1), right)
    interleaved = outer.view(tasks, sites, a, b, s, s).permute(0, 1, 2, 4, 3, 5)
    return interleaved.reshape(tasks, sites, a * s, b * s)


@register_method
class PolyhistorLite(HyperAdapterMethod):
    """Polyhistor-Lite: template kernels ⊗ layer-wise scaling kernels (module doc)."""

    name = "polyhistor-lite"
    description = "decomposed hypernetworks emit template kernels, scaled per layer (Kronecker)"
    published_name = None
    Config = PolyhistorConfig

    def build_generators(self) -> None:
        dims = [stage.dim for stage in self._stages]
        width = dims[0]
        if any(d % width for d in dims):
            raise PebenchError(f"polyhistor-lite needs every stage width to be a multiple of the "
                               f"first ({', '.join(map(str, dims))}).")
        # One template size for every site: the generators run as a single stage.
        template = (width, width // self.config.reduction)
        self.templates = PrefixGenerator(self.config.projected_dim,
                                         decomposed_shapes([template], self.config.rank),
                                         zero_init=DECOMPOSED_ZERO_INIT)
        self.scaling = nn.ModuleDict({str(stage.index): ScalingKernels(len(stage.sites),
                                                                       stage.dim // width)
                                      for stage in self._stages})

    def generate(self, z: torch.Tensor) -> list[AdapterWeights]:
        (factors,) = self.templates(z, [z.shape[1]])
        # The templates of all sites at once, then split into stages: one matrix product per
        # weight instead of one per stage, and a split's backward writes no zero gradient.
        per_stage = zip(*(t.split(self.sites_per_stage, dim=1)
                          for t in decomposed_weights(factors)), strict=True)
        return [self.scaled(templates, stage)
                for stage, templates in zip(self._stages, per_stage, strict=True)]

    def scaled(self, templates: AdapterWeights, stage: _Stage) -> AdapterWeights:
        """The stage's weights: its sites' templates ⊗ their scaling kernels."""
        scaling = self.scaling[str(stage.index)]
        down, down_bias, up, up_bias = templates
        return (kron_per_site(down, scaling.down), kron_per_site(down_bias, scaling.down_bias),
                kron_per_site(up, scaling.up), kron_per_site(up_bias, scaling.up_bias))
