"""PrefixGenerator: each stage reads a prefix of one linear hypernetwork's output, computed
block by block with the values and gradients of the plain slicing it replaces."""

from __future__ import annotations

import pytest
import torch

from methods.prefix_generator import PrefixGenerator

IN_DIM = 5
SHAPES = {"weight": [(2, 3), (4, 3), (4, 6)], "bias": [(3,), (3,), (6,)], "fixed": [(2,)] * 3}
SITES = [2, 1, 3]


def head_linear(generator: PrefixGenerator, head: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The one (weight, bias) of a head that its blocks hold, rows in output order."""
    weights, biases = [], []
    for weight, bias, widths in zip(generator.weights, generator.biases,
                                    generator.block_widths, strict=True):
        start = sum(widths[:head])
        weights.append(weight[:, start:start + widths[head]].T)
        biases.append(bias[start:start + widths[head]])
    return torch.cat(weights), torch.cat(biases)


def sliced_reference(generator: PrefixGenerator, z: torch.Tensor) -> list[list[torch.Tensor]]:
    """What the blocks replace: every site through the whole linear, each stage's prefix."""
    stages, start = [], 0
    for stage, count in enumerate(SITES):
        heads = []
        for head, shapes in enumerate(SHAPES.values()):
            weight, bias = head_linear(generator, head)
            size = torch.Size(shapes[stage]).numel()
            out = torch.nn.functional.linear(z[:, start:start + count], weight, bias)
            heads.append(out[..., :size].reshape(z.shape[0], count, *shapes[stage]))
        stages.append(heads)
        start += count
    return stages


def test_values_and_gradients_equal_slicing_one_linear() -> None:
    torch.manual_seed(0)
    generator = PrefixGenerator(IN_DIM, SHAPES).double()
    z = torch.randn(2, sum(SITES), IN_DIM, dtype=torch.float64, requires_grad=True)
    ours = generator(z, SITES)
    reference = sliced_reference(generator, z)
    seeds = [[torch.randn_like(t) for t in stage] for stage in reference]
    for our_stage, ref_stage in zip(ours, reference, strict=True):
        assert len(our_stage) == len(SHAPES)
        for a, b in zip(our_stage, ref_stage, strict=True):
            assert a.shape == b.shape
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    params = [z, *generator.parameters()]
    grads = torch.autograd.grad([t for s in ours for t in s], params,
                                [g for s in seeds for g in s])
    expected = torch.autograd.grad([t for s in reference for t in s], params,
                                   [g for s in seeds for g in s])
    for a, b in zip(grads, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_blocks_hold_each_stage_increment_once() -> None:
    generator = PrefixGenerator(IN_DIM, SHAPES)
    # weight 6 → 12 → 24 entries, bias 3 → 3 → 6, fixed 2 throughout.
    assert generator.block_widths == [[6, 3, 2], [6, 0, 0], [12, 3, 0]]
    count = sum(p.numel() for p in generator.parameters())
    assert count == (IN_DIM + 1) * (24 + 6 + 2)


def test_zero_initialised_heads_emit_zero_and_the_others_start_as_nn_linear() -> None:
    torch.manual_seed(0)
    generator = PrefixGenerator(64, {"a": [(8,), (16,)], "b": [(8,), (16,)]}, zero_init=("b",))
    outputs = generator(torch.randn(1, 3, 64), [1, 2])
    for a, b in outputs:
        assert b.abs().max() == 0
        assert a.abs().max() > 0
    rows, _ = head_linear(generator, 0)
    assert rows.abs().max() <= 64 ** -0.5


def test_a_stage_narrower_than_the_one_before_is_refused() -> None:
    with pytest.raises(ValueError, match="shrinks"):
        PrefixGenerator(4, {"w": [(4, 4), (2, 2)]})
