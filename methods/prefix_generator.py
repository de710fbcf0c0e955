"""A linear hypernetwork for adapters of several widths (not a method family itself).

Hyperformer and Polyhistor emit the weights of every stage of a Swin from one hypernetwork
sized for the widest stage; a narrower stage reads a prefix of its output. How that prefix is
computed decides what ``prepare()`` costs: slicing one large generator weight per stage makes
autograd zero-fill a gradient of the whole weight for every stage (most of Hyperformer's
``prepare()`` before this module). Here the output rows are held as one block per stage
increment, so each block multiplies only the conditioning vectors of the sites that read it
and its gradient is one matrix product, with no zero-filled buffer and no copy of a weight.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import pairwise

import torch
from torch import nn

from pebench.params import OTHER

Shape = tuple[int, ...]


class PrefixGenerator(nn.Module):
    """z ↦ W·z + b for several named outputs ("heads"), each read by a stage as a prefix.

    ``shapes[head][s]`` is the shape that the sites of stage ``s`` read from ``head``: the
    first ``prod(shape)`` entries of the head's flat output, in row-major order. Sizes must not
    shrink from one stage to the next (Swin stages only widen), so the widest stage reads all
    of it and every other stage a prefix of it. Heads named in ``zero_init`` start at zero
    (weights and bias): their output is 0 until training moves them. The others are
    initialised as ``nn.Linear`` is, uniform in ±1/√in_dim, or with ``init_std`` weights
    N(0, init_std²) and zero biases; either way the parameter count and the initial
    distribution are those of one ``nn.Linear(in_dim, Σ widest sizes)`` so initialised.
    """

    param_group = OTHER

    def __init__(self, in_dim: int, shapes: dict[str, Sequence[Shape]],
                 zero_init: Sequence[str] = (), init_std: float | None = None) -> None:
        super().__init__()
        self.shapes = {head: [tuple(s) for s in stages] for head, stages in shapes.items()}
        self.num_stages = len(next(iter(shapes.values())))
        sizes = {head: [math.prod(s) for s in stages] for head, stages in self.shapes.items()}
        for head, stage_sizes in sizes.items():
            if len(stage_sizes) != self.num_stages:
                raise ValueError(f"head {head!r} gives {len(stage_sizes)} stages, "
                                 f"expected {self.num_stages}")
            if any(b < a for a, b in pairwise(stage_sizes)):
                raise ValueError(f"head {head!r} shrinks from one stage to the next: "
                                 f"{stage_sizes}")
        # Block of stage s: for each head, the entries stage s reads and no earlier stage does.
        self.block_stages: list[int] = []
        self.block_widths: list[list[int]] = []
        weights, biases = [], []
        bound = in_dim ** -0.5
        for stage in range(self.num_stages):
            widths = [size[stage] - (size[stage - 1] if stage else 0) for size in sizes.values()]
            if not any(widths):
                continue
            # (in_dim, out), the transpose of nn.Linear's layout: the products with a few
            # conditioning vectors run about 1.5× faster on a CPU with the output dimension
            # contiguous.
            weight, bias = torch.empty(in_dim, sum(widths)), torch.empty(sum(widths))
            for head, columns, head_bias in zip(sizes, weight.split(widths, dim=1),
                                                bias.split(widths), strict=True):
                if head in zero_init:
                    nn.init.zeros_(columns)
                    nn.init.zeros_(head_bias)
                elif init_std is not None:
                    nn.init.normal_(columns, std=init_std)
                    nn.init.zeros_(head_bias)
                else:
                    nn.init.uniform_(columns, -bound, bound)
                    nn.init.uniform_(head_bias, -bound, bound)
            weights.append(nn.Parameter(weight))
            biases.append(nn.Parameter(bias))
            self.block_stages.append(stage)
            self.block_widths.append(widths)
        self.weights = nn.ParameterList(weights)
        self.biases = nn.ParameterList(biases)

    def forward(self, z: torch.Tensor,
                sites_per_stage: Sequence[int]) -> list[tuple[torch.Tensor, ...]]:
        """z (T, S, in_dim) holds the sites stage after stage, ``sites_per_stage[s]`` of
        stage s; returns for every stage its heads, each (T, sites of the stage, *shape)."""
        if len(sites_per_stage) != self.num_stages:
            raise ValueError(f"{len(sites_per_stage)} stages given, expected {self.num_stages}")
        starts = [sum(sites_per_stage[:s]) for s in range(self.num_stages)]
        # Each block serves its own stage and every wider one, the sites from its stage on.
        # Splits, not slices: the backward of a split concatenates, that of a slice zero-fills.
        tasks = z.shape[0]
        per_block = []
        for first, weight, bias in zip(self.block_stages, self.weights, self.biases, strict=True):
            sites = z[:, starts[first]:]
            out = torch.addmm(bias, sites.reshape(-1, sites.shape[-1]), weight)
            per_block.append(out.view(tasks, -1, out.shape[-1])
                             .split(list(sites_per_stage[first:]), dim=1))
        stages = []
        for stage, count in enumerate(sites_per_stage):
            parts: list[list[torch.Tensor]] = [[] for _ in self.shapes]
            for first, outputs, widths in zip(self.block_stages, per_block, self.block_widths,
                                              strict=True):
                if first > stage:
                    break
                for head_parts, piece in zip(parts, outputs[stage - first].split(widths, dim=-1),
                                             strict=True):
                    head_parts.append(piece)
            stages.append(tuple(
                (pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=-1))
                .view(tasks, count, *shapes[stage])
                for pieces, shapes in zip(parts, self.shapes.values(), strict=True)))
        return stages
