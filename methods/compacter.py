"""Hypercomplex adapters: PHM-Adapter, Compacter and Compacter++ (Karimi Mahabadi et al.,
NeurIPS 2021, "Compacter: Efficient Low-Rank Hypercomplex Adapter Layers").

All three are Houlsby bottleneck adapters, h + W_up·GELU(W_down·h + b_down) + b_up, whose two
weight matrices are parameterised hypercomplex multiplication (PHM) layers: a sum of n
Kronecker products W = Σ_{i=1..n} A_i ⊗ B_i with "rule" matrices A_i of n × n and blocks B_i of
(in/n) × (out/n), so n must divide both widths of every projection.

* ``phm-adapter``: every PHM layer learns its own A_i and full B_i (adapters after the
  attention and after the MLP sub-layer).
* ``compacter``: the A_i are one set shared by every PHM layer (the "slow" weights), and each
  B_i is a rank-one product s_i t_iᵀ (the "fast" weights). The A_i are n × n whatever the
  layer width, which is why one set can serve all four stages of a Swin.
* ``compacter++``: Compacter with the adapter after the MLP sub-layer only.

As in the paper (Fig. 2: only the layer normalisations and the adapters are updated), the
encoder's LayerNorms train too: every LayerNorm of the Swin, as for Houlsby adapters
(``methods/adapters.py``).

Multi-task form: the paper is single-task, so each task gets its own copy of everything the
method trains: its adapters' fast weights and biases, its layer norms and, for Compacter, its
own set of shared A_i (shared across the layers of that task's encoder, not across tasks).
``shared=true`` trains one copy for all tasks.

Weights are stored input-major, W of (in, out) applied as x @ W by ``TaskContext.linear``, as
in the authors' code; the paper writes the transpose (k × d, y = Wx), which is the same family
since (A ⊗ B)ᵀ = Aᵀ ⊗ Bᵀ. Every adapter's weights are formed from their factors once per step
in ``prepare()``, for all weight sets and all adapters of a stage at once, not once per
forward: the per-task loop execution would otherwise rebuild them once per task.

Choices where the paper fixes no value for a Swin (documented hyperparameters):

* ``phm_dim`` n = 4 for all three. The authors' released configurations use n = 4 for
  Compacter and Compacter++ and n = 12 for PHM-Adapter; 12 does not divide the widths of
  swin-nano (32·2^s), the default backbone, so PHM-Adapter defaults to 4 as well.
  ``--set phm_dim=12`` gives the released PHM-Adapter on Swin-T/S (not Swin-B: 128 / 8 = 16).
* ``reduction`` = 8 (bottleneck d/8 in every stage). The released configurations use a
  reduction factor of 32 on T5-base (bottleneck 24); on Swin-T that is a bottleneck of 3 in
  the first stage (1 on swin-nano), which n = 4 cannot divide. 8 is the largest reduction for
  which n = 4 divides every bottleneck of every registered Swin.
* GELU inside the adapter: the exact GELU of the backbone; the authors' code uses its tanh
  approximation.
* Initialisation, from the authors' code: A_i from N(0, ``rule_init_std``²) with std 1e-4 for
  Compacter's shared A_i and 0.01 for PHM-Adapter's per-layer A_i; every fast-weight matrix
  (B_i, or s_i and t_i) Glorot-uniform with gain √2; biases plain vectors (not PHM-shaped),
  zero. The adapters therefore start *near* the identity (W is a product of small A_i and
  Glorot blocks), not exactly at it; ``rule_init_std=0`` gives the exact identity.
* ``train_layer_norms`` = true (the paper's choice; false trains the adapters only).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from methods.adapter_layers import (
    AdapterWeights,
    GeneratedAdapter,
    Placement,
    adapter_slots,
    check_reduction,
    weight_sets_group,
)
from methods.task_layers import layer_norms_per_task
from pebench.backbones import BackboneSpec
from pebench.errors import PebenchError
from pebench.method import SharableMethod, SharingConfig, register_method
from pebench.options import option


@dataclass
class PHMConfig(SharingConfig):
    phm_dim: int = option(4, "n: number of Kronecker terms Σ Aᵢ ⊗ Bᵢ, Aᵢ of n × n")
    reduction: int = option(8, "bottleneck width d / reduction in every stage")
    rule_init_std: float = option(0.01, "std of the rule matrices Aᵢ at init (0: exactly the "
                                        "identity adapter)")
    train_layer_norms: bool = option(True, "also train the encoder's layer norms (a copy "
                                           "per weight set)")

    def __post_init__(self) -> None:
        if self.phm_dim < 1:
            raise ValueError(f"phm_dim must be ≥ 1, got {self.phm_dim}")
        if self.reduction < 1:
            raise ValueError(f"reduction must be ≥ 1, got {self.reduction}")
        if self.rule_init_std < 0:
            raise ValueError(f"rule_init_std must be ≥ 0, got {self.rule_init_std}")


@dataclass
class CompacterConfig(PHMConfig):
    rule_init_std: float = 1e-4


def kron_sum(rules: torch.Tensor, blocks: torch.Tensor) -> torch.Tensor:
    """Σ_i A_i ⊗ B_i for every leading index: ``rules`` (..., n, n, n) holds the A_i,
    ``blocks`` (..., n, p, q) the B_i (leading dimensions broadcast), the result is
    (..., n·p, n·q). Entry [a·p + u, b·q + v] is Σ_i A_i[a, b] · B_i[u, v]: torch.kron's
    order, as in ``kron_per_site`` (methods/hypernetworks.py)."""
    n, p, q = blocks.shape[-3:]
    product = torch.einsum("...iab,...iuv->...aubv", rules, blocks)
    return product.reshape(*product.shape[:-4], n * p, n * q)


def _glorot_uniform(shape: tuple[int, ...]) -> torch.Tensor:
    """Glorot-uniform over the last two dimensions with gain √2, the authors' initialiser."""
    rows, cols = shape[-2:]
    bound = math.sqrt(2.0) * math.sqrt(6.0 / (rows + cols))
    return torch.empty(shape).uniform_(-bound, bound)


class PHMProjection(nn.Module):
    """One projection (down or up, ``fan_in`` → ``fan_out``) of the ``sites`` adapters of a
    stage, as PHM layers with plain biases; ``num_sets`` weight sets (one per task, or 1).

    ``rank_one``: each B_i is s_i t_iᵀ (Compacter) instead of a full block (PHM-Adapter).
    ``rule_init_std``: the projection owns per-site A_i drawn from N(0, std²) (PHM-Adapter);
    None when the A_i are shared and passed to ``forward`` (Compacter).
    """

    def __init__(self, num_sets: int, sites: int, n: int, fan_in: int, fan_out: int,
                 shared: bool, rank_one: bool, rule_init_std: float | None) -> None:
        super().__init__()
        self.param_group = weight_sets_group(shared)
        self.rank_one = rank_one
        lead, p, q = (num_sets, sites, n), fan_in // n, fan_out // n
        if rank_one:
            self.s = nn.Parameter(_glorot_uniform((*lead, p, 1)))
            self.t = nn.Parameter(_glorot_uniform((*lead, 1, q)))
        else:
            self.blocks = nn.Parameter(_glorot_uniform((*lead, p, q)))
        self.bias = nn.Parameter(torch.zeros(num_sets, sites, fan_out))
        self.rules = None if rule_init_std is None else nn.Parameter(
            torch.randn(*lead, n, n) * rule_init_std)

    def fast_weights(self) -> torch.Tensor:
        """The B_i, (S, sites, n, in/n, out/n)."""
        return self.s @ self.t if self.rank_one else self.blocks

    def forward(self, shared_rules: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Weights (S, sites, in, out) and biases (S, sites, out); ``shared_rules`` (S, n, n, n)
        are the A_i of every site when the projection owns none."""
        rules = self.rules if shared_rules is None else shared_rules.unsqueeze(1)
        assert rules is not None
        return kron_sum(rules, self.fast_weights()), self.bias


class SharedRules(nn.Module):
    """Compacter's slow weights: one set of n rule matrices A_i (n × n) per weight set, used by
    every PHM layer of every stage, down and up projections alike."""

    def __init__(self, num_sets: int, n: int, shared: bool, init_std: float) -> None:
        super().__init__()
        self.param_group = weight_sets_group(shared)
        self.weight = nn.Parameter(torch.randn(num_sets, n, n, n) * init_std)


class PHMAdapters(SharableMethod):
    """Adapters with PHM projections at ``placement`` of every block, weights formed in
    ``prepare()`` (module doc)."""

    Config: ClassVar[type] = PHMConfig
    placement: ClassVar[Placement] = "both"
    # Compacter: A_i shared by every layer and rank-one B_i; PHM-Adapter: per-layer A_i, full B_i.
    compact: ClassVar[bool] = False

    def attach(self, encoder: nn.Module) -> nn.Module:
        config = self.config
        _check_widths(encoder.spec, config)
        stages: list[list[GeneratedAdapter]] = [[] for _ in encoder.spec.stage_dims]
        for site in encoder.blocks():
            for add in adapter_slots(site, self.placement):
                adapter = GeneratedAdapter(encoder.task_context, site.dim,
                                           site.dim // config.reduction)
                add(adapter)
                stages[site.stage].append(adapter)
        # A plain list: the adapters belong to the encoder and must not register twice.
        self._adapters = stages
        own_rules = None if self.compact else config.rule_init_std
        self.down, self.up = nn.ModuleList(), nn.ModuleList()
        for dim, adapters in zip(encoder.spec.stage_dims, stages, strict=True):
            bottleneck = dim // config.reduction
            for projections, fan_in, fan_out in ((self.down, dim, bottleneck),
                                                 (self.up, bottleneck, dim)):
                projections.append(PHMProjection(
                    self.num_sets, len(adapters), config.phm_dim, fan_in, fan_out,
                    config.shared, self.compact, own_rules))
        self.rules = SharedRules(self.num_sets, config.phm_dim, config.shared,
                                 config.rule_init_std) if self.compact else None
        if config.train_layer_norms:
            layer_norms_per_task(encoder, self.num_sets, config.shared)
        return encoder

    def prepare(self) -> None:
        shared_rules = None if self.rules is None else self.rules.weight
        for adapters, down, up in zip(self._adapters, self.down, self.up, strict=True):
            weights: AdapterWeights = (*down(shared_rules), *up(shared_rules))
            for index, adapter in enumerate(adapters):
                adapter.set_weights(tuple(w[:, index] for w in weights))


def _check_widths(spec: BackboneSpec, config: PHMConfig) -> None:
    """Every stage width divisible by ``reduction``, and every width and bottleneck by n:
    one line naming the widths and the values of n that would work."""
    check_reduction(spec, config.reduction)
    widths = spec.stage_dims
    bottlenecks = tuple(d // config.reduction for d in widths)
    if any(w % config.phm_dim for w in widths + bottlenecks):
        common = math.gcd(*widths, *bottlenecks)
        valid = [n for n in range(1, common + 1) if common % n == 0]
        raise PebenchError(
            f"--set phm_dim={config.phm_dim} must divide every stage width of {spec.name} "
            f"({', '.join(map(str, widths))}) and every bottleneck width at "
            f"reduction={config.reduction} ({', '.join(map(str, bottlenecks))}); valid: "
            f"{', '.join(map(str, valid))} (or change --set reduction).")


@register_method
class PHMAdapter(PHMAdapters):
    """PHM layers with their own rule matrices in Houlsby adapters (module doc)."""

    name = "phm-adapter"
    description = "Houlsby adapters whose weights are sums of Kronecker products (one set per task)"


@register_method
class Compacter(PHMAdapters):
    """Shared rule matrices, rank-one fast weights, adapters after both sub-layers (module doc)."""

    name = "compacter"
    description = "PHM adapters with shared rule matrices and rank-one weights (one set per task)"
    published_name = "Compacter"
    Config: ClassVar[type] = CompacterConfig
    compact = True


@register_method
class CompacterPlusPlus(Compacter):
    """Compacter with the adapter after the MLP sub-layer only (module doc)."""

    name = "compacter++"
    description = "Compacter with one adapter after the MLP sub-layer (one set per task)"
    published_name = "Compacter++"
    placement = "mlp"
