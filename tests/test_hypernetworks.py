"""Hyperformer, Polyhistor and Polyhistor-Lite: shapes, counts, identity at init, loop/batched
equivalence, frozen weights, and weights generated once per step."""

from __future__ import annotations

import pytest
import torch
from method_testing import NANO, PASCAL, assert_loop_and_batched_agree, build, train_step

from methods.adapter_layers import GeneratedAdapter, LowRank, Weight
from methods.hypernetworks import Conditioning, kron_per_site
from pebench.data.base import DatasetInfo
from pebench.errors import PebenchError
from pebench.evaluate import evaluate
from pebench.model import MultiTaskModel
from pebench.params import count_parameters
from pebench.task import get_task

HYPER = ("hyperformer", "polyhistor", "polyhistor-lite")


def frozen_taps(model: MultiTaskModel, images: torch.Tensor) -> list[torch.Tensor]:
    """The backbone alone: every adapter removed from the branch outputs."""
    saved = []
    for site in model.encoder.blocks():
        for branch in (site.block.drop_path1, site.block.drop_path2):
            saved.append((branch, list(branch.modules_after)))
            branch.modules_after = torch.nn.ModuleList()
    taps = model.encoder(images)
    for branch, modules in saved:
        branch.modules_after = torch.nn.ModuleList(modules)
    return taps


def generated_adapters(model: MultiTaskModel) -> list[GeneratedAdapter]:
    return [m for m in model.encoder.modules() if isinstance(m, GeneratedAdapter)]


def formed(weight: Weight) -> torch.Tensor:
    return weight.left @ weight.right.mT if isinstance(weight, LowRank) else weight


def test_published_setting_counts() -> None:
    counts = {m: count_parameters(build(m, PASCAL, "swin-t", 448, meta=True)) for m in HYPER}
    embeddings = (4 + 12 + 2) * 64
    # Hyperformer as released: projector 192 → 128 → 64, then a layer norm on z; generators
    # sized for Swin-T's widest stage (768 × 384), p = 64 (+ bias).
    released = embeddings + (3 * 64 * 128 + 128) + (128 * 64 + 64) + 2 * 64
    assert counts["hyperformer"].other == released + 65 * (2 * 768 * 384 + 384 + 768)
    assert counts["hyperformer"].trainable == 40_394_304  # published 72.77M: ratio 0.555
    earlier = count_parameters(build("hyperformer", PASCAL, "swin-t", 448, meta=True,
                                     projected_dim="128", projector_norm="false"))
    assert earlier.trainable == 78_224_896  # pebench's form before issue 13: ratio 1.075
    # Polyhistor keeps its own conditioning: projector 192 → 128 → 128, no norm.
    conditioning = embeddings + (3 * 64 * 128 + 128) + (128 * 128 + 128)
    # Polyhistor, the paper's Eq. 1: W = [W_down; W_upᵀ] = A·Bᵀ, A (768 × 24), B (2·384 × 24),
    # plus the bias generators.
    assert counts["polyhistor"].other == conditioning + 129 * (
        768 * 24 + 2 * 384 * 24 + 384 + 768)
    assert counts["polyhistor"].trainable == 6_893_056  # published 8.96M: ratio 0.769
    # The separate form: a factor pair for each weight (pebench's form before issue 13).
    separate = count_parameters(build("polyhistor", PASCAL, "swin-t", 448, meta=True,
                                      decomposition="separate"))
    assert separate.other == conditioning + 129 * (
        768 * 24 + 24 * 384 + 384 + 384 * 24 + 24 * 768 + 768)
    assert separate.trainable == 9_270_784  # ratio 1.035
    # Polyhistor-Lite: the same W at the 96 × 48 template; scaling kernels 2·(s² + s) per
    # adapter.
    lite = counts["polyhistor-lite"]
    assert lite.other == conditioning + 129 * (96 * 24 + 2 * 48 * 24 + 48 + 96)
    depths, scales = (2, 2, 6, 2), (1, 2, 4, 8)
    assert lite.encoder_shared == sum(d * 2 * 2 * (s * s + s) for d, s in
                                      zip(depths, scales, strict=True)) == 1120
    assert lite.other + lite.encoder_shared < counts["polyhistor"].other / 7
    for c in counts.values():
        assert c.decoders == 1_946_624 and c.encoder_task_specific == 0


@pytest.mark.parametrize("method", HYPER)
@pytest.mark.parametrize("execution", ["batched", "loop"])
def test_adapters_are_the_identity_at_initialisation(method: str, execution: str) -> None:
    # float64: the adapted and the frozen pass differ only by rounding (~1e-16 relative), so
    # 1e-12 holds on any CPU's kernels while any non-zero adapter output would show.
    model = build(method, execution=execution).double().eval()
    images = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        model.prepare()
        adapted = model.method.encode(model.encoder, images)
        frozen = frozen_taps(model, images)
    for task in NANO:
        for ours, reference in zip(adapted[task], frozen, strict=True):
            torch.testing.assert_close(ours, reference, rtol=1e-12, atol=1e-12)


def test_hyperformer_starts_as_the_released_code_does_with_identity_init_false() -> None:
    """Task projector to 64 with a layer norm (eps 1e-6) on z; every linear N(0, 0.01²) with
    zero biases; so the generated adapters start small but not at zero."""
    torch.manual_seed(0)
    model = build("hyperformer", PASCAL, "swin-t", 224, identity_init="false")
    projector = model.method.conditioning.projector
    norm = projector[3]
    assert isinstance(norm, torch.nn.LayerNorm) and norm.eps == 1e-6
    assert norm.normalized_shape == (64,)
    generator = model.method.generator
    linears = [projector[0].weight, projector[2].weight, *generator.weights]
    for weight in linears:
        assert abs(weight.std().item() - 0.01) < 0.0005 and abs(weight.mean().item()) < 0.0005
    biases = [projector[0].bias, projector[2].bias, *generator.biases]
    assert all(bias.abs().max() == 0 for bias in biases)
    model.prepare()
    ups = [formed(a._weights[2]) for a in generated_adapters(model)]
    # z is layer-normed (unit variance), so a generated entry is N(0, 64 · 0.01²).
    spread = torch.cat([u.flatten() for u in ups]).std().item()
    assert 0.07 < spread < 0.09


@pytest.mark.parametrize(("method", "std"), [("polyhistor", 0.01), ("polyhistor-lite", None)])
def test_polyhistor_generators_start_at_their_documented_initialisation(
        method: str, std: float | None) -> None:
    """Polyhistor: N(0, 0.01²) (PyTorch's default let a seed collapse); Lite: PyTorch's
    default, uniform in ±1/√in (methods/hypernetworks.py). The up-projection columns start
    at zero either way (identity_init)."""
    model = build(method)
    generators = model.method.generators if method == "polyhistor" else model.method.templates
    projector = model.method.conditioning.projector
    drawn = [projector[0].weight.T, projector[2].weight.T]  # (in, out), as the generators
    drawn += [w[:, w.abs().amax(0) > 0] for w in generators.weights]
    for weight in drawn:
        bound = weight.shape[0] ** -0.5
        expected = bound / 3 ** 0.5 if std is None else std  # uniform(±b): std b/√3
        assert abs(weight.std().item() / expected - 1) < 0.05
        assert std is not None or weight.abs().max() <= bound


@pytest.mark.parametrize("method", HYPER)
def test_only_the_generators_train_and_the_backbone_stays_bit_identical(method: str) -> None:
    model = build(method)
    assert not any(p.requires_grad for n, p in model.encoder.named_parameters())
    backbone = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    trainable = {n: p.clone() for n, p in model.named_parameters() if p.requires_grad}
    assert all(n.startswith(("method.", "decoders.")) for n in trainable)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(2):
        train_step(model, torch.randn(2, 3, 64, 64), optimizer)
    for key, value in model.encoder.state_dict().items():
        assert torch.equal(value, backbone[key]), key
    moved = [n for n, p in model.named_parameters() if p.requires_grad
             and not torch.equal(p, trainable[n])]
    assert any(n.startswith("method.") for n in moved)
    # Every up projection must be non-zero after training (Polyhistor's start at zero).
    model.prepare()
    for adapter in generated_adapters(model):
        assert adapter._weights is not None
        assert formed(adapter._weights[2]).abs().max() > 0, "an up weight never learnt"


@pytest.mark.parametrize("method", HYPER)
def test_loop_and_task_batched_passes_agree(method: str) -> None:
    model = build(method)
    assert_loop_and_batched_agree(model, NANO)


def test_weights_are_generated_once_per_step_and_once_per_evaluation(
        monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    original = Conditioning.forward
    monkeypatch.setattr(Conditioning, "forward", lambda self: calls.append(1) or original(self))
    model = build("polyhistor-lite")
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    train_step(model, torch.randn(4, 3, 64, 64), optimizer)
    assert len(calls) == 1
    batches = [{"image": torch.randn(2, 3, 64, 64),
                "semseg": torch.zeros(2, 64, 64, dtype=torch.long)} for _ in range(3)]
    info = DatasetInfo("t", ("semseg",), ("semseg",), {"semseg": 7})
    evaluate(model, batches, {"semseg": get_task("semseg")}, info, torch.device("cpu"))
    assert len(calls) == 2


def test_forward_without_prepare_is_a_clear_error() -> None:
    model = build("polyhistor")
    with pytest.raises(RuntimeError, match=r"call model\.prepare\(\)"):
        model(torch.randn(1, 3, 64, 64))


def test_reduction_that_does_not_divide_the_widths_is_refused() -> None:
    with pytest.raises(PebenchError, match="reduction=3 must divide every stage width"):
        build("hyperformer", reduction="3")
    with pytest.raises(PebenchError, match="rank must be ≥ 1"):
        build("polyhistor", rank="0")


def test_kronecker_matches_torch_kron() -> None:
    template = torch.randn(2, 3, 4, 5)
    scaling = torch.randn(3, 2, 2)
    out = kron_per_site(template, scaling)
    for t in range(2):
        for s in range(3):
            torch.testing.assert_close(out[t, s], torch.kron(template[t, s], scaling[s]))
    vectors = kron_per_site(torch.randn(2, 3, 4), torch.randn(3, 2))
    assert vectors.shape == (2, 3, 8)


@pytest.mark.parametrize("execution", ["batched", "loop"])
def test_polyhistor_applies_thin_factors_as_they_are_with_the_formed_weights_values(
        execution: str) -> None:
    # swin-nano at rank 24: stages of width 32 and 64 form W, 128 and 256 keep A and B
    # (24 · (128 + 64) < 128 · 64). Any rank keeps the adapters' outputs.
    torch.manual_seed(0)
    model = build("polyhistor", execution=execution).double().eval()
    for generator in model.method.generators.weights:  # non-zero up weights too
        torch.nn.init.normal_(generator, std=0.05)
    images = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        model.prepare()
        kept = {a.dim: isinstance(a._weights[0], LowRank) for a in generated_adapters(model)}
        assert kept == {32: False, 64: False, 128: True, 256: True}
        factored = model.method.encode(model.encoder, images)
        for adapter in generated_adapters(model):
            adapter._weights = tuple(formed(w) for w in adapter._weights)
        dense = model.method.encode(model.encoder, images)
    for task in NANO:
        for ours, reference in zip(factored[task], dense[task], strict=True):
            torch.testing.assert_close(ours, reference, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("decomposition", "rank_bound"), [("paired", 24), ("separate", 32)])
def test_paired_decomposition_emits_one_low_rank_w_of_both_weights(decomposition: str,
                                                                   rank_bound: int) -> None:
    # Eq. 1: W = [W_down; W_upᵀ] (d × 2n) = A·Bᵀ has rank ≤ k; two separate pairs do not.
    # At swin-nano's first stage (d = 32, n = 16, k = 24), W is 32 × 32.
    torch.manual_seed(0)
    model = build("polyhistor", decomposition=decomposition).double()
    for generator in model.method.generators.weights:  # non-zero up factors too
        torch.nn.init.normal_(generator, std=0.05)
    with torch.no_grad():
        model.prepare()
    first = next(a for a in generated_adapters(model) if a.dim == 32)
    down, _, up, _ = (formed(w)[0] for w in first._weights)  # task 0
    joined = torch.cat([down, up.T], dim=1)
    assert joined.shape == (32, 32)
    assert int(torch.linalg.matrix_rank(joined)) == rank_bound
