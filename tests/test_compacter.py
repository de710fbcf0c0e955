"""PHM-Adapter, Compacter and Compacter++: counts in the published setting, the Kronecker
construction, shared rule matrices and rank-one fast weights, placement, near-identity at
initialisation, frozen weights, loop/batched equivalence, the shared form and the PHM-dimension
check."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from cli_runner import run_cli
from method_testing import (
    DECODERS_PUBLISHED,
    NANO,
    PASCAL,
    SWIN_T_LAYER_NORM_WIDTHS,
    assert_loop_and_batched_agree,
    build,
    per_swin_t_block,
    train_step,
    trainable,
)

from methods.adapter_layers import GeneratedAdapter
from methods.compacter import PHMProjection, SharedRules, kron_sum
from methods.task_layers import TaskLayerNorm
from pebench.errors import PebenchError
from pebench.params import count_parameters

METHODS = ("phm-adapter", "compacter", "compacter++")
TASKS = len(PASCAL)
def test_counts_in_the_published_setting() -> None:
    n, reduction = 4, 8
    counts = {m: count_parameters(build(m, PASCAL, "swin-t", 448, meta=True)) for m in METHODS}

    def compacter_adapter(d: int) -> int:
        k = d // reduction
        # Down and up: n pairs s_i (in/n), t_i (out/n) = in + out each, plus plain biases.
        return (d + k) + k + (k + d) + d

    def phm_adapter(d: int) -> int:
        k = d // reduction
        # Down and up: their own n rule matrices (n³) and n blocks of (in/n)·(out/n), biases.
        return 2 * (n**3 + d * k // n) + k + d

    assert 2 * SWIN_T_LAYER_NORM_WIDTHS == 23_232
    per_task = {
        "compacter": 2 * per_swin_t_block(compacter_adapter) + n**3 + 2 * SWIN_T_LAYER_NORM_WIDTHS,
        "compacter++": per_swin_t_block(compacter_adapter) + n**3 + 2 * SWIN_T_LAYER_NORM_WIDTHS,
        "phm-adapter": 2 * per_swin_t_block(phm_adapter) + 2 * SWIN_T_LAYER_NORM_WIDTHS,
    }
    for method, c in counts.items():
        assert c.decoders == DECODERS_PUBLISHED and c.encoder_shared == c.other == 0
        assert c.encoder_task_specific == TASKS * per_task[method], method
    assert counts["compacter"].trainable == 2_159_040  # published 2.78M: ratio 0.777
    assert counts["compacter++"].trainable == 2_099_424  # published 2.66M: ratio 0.789
    assert counts["phm-adapter"].trainable == 3_169_856  # no published row


def test_weight_is_the_sum_of_kronecker_products() -> None:
    torch.manual_seed(0)
    n, p, q = 2, 3, 5
    rules, blocks = torch.randn(n, n, n), torch.randn(n, p, q)
    weight = kron_sum(rules, blocks)
    assert weight.shape == (n * p, n * q)
    # Row a·p + u, column b·q + v: Σ_i A_i[a, b] · B_i[u, v].
    a, u, b, v = 1, 2, 0, 4
    expected = rules[0, a, b] * blocks[0, u, v] + rules[1, a, b] * blocks[1, u, v]
    torch.testing.assert_close(weight[a * p + u, b * q + v], expected)
    torch.testing.assert_close(weight, sum(torch.kron(rules[i], blocks[i]) for i in range(n)))
    # Leading dimensions (weight sets, sites) broadcast: one set of rules for three sites.
    batched = kron_sum(rules.expand(4, 1, n, n, n), blocks.expand(4, 3, n, p, q))
    torch.testing.assert_close(batched, weight.expand(4, 3, n * p, n * q))


def generated_weights(model: torch.nn.Module) -> list[GeneratedAdapter]:
    model.prepare()
    return [m for m in model.encoder.modules() if isinstance(m, GeneratedAdapter)]


def test_compacter_shares_one_set_of_rule_matrices_across_every_layer() -> None:
    model = build("compacter")
    method = model.method
    rules = [m for m in method.modules() if isinstance(m, SharedRules)]
    assert len(rules) == 1
    slow = rules[0].weight
    assert slow.shape == (len(NANO), 4, 4, 4)
    projections = [m for m in method.modules() if isinstance(m, PHMProjection)]
    assert len(projections) == 2 * 4 and all(p.rules is None for p in projections)
    adapters = generated_weights(model)
    # The first adapter of the first stage and the last of the last: both from the same A_i.
    for adapter, stage, index in ((adapters[0], 0, 0), (adapters[-1], 3, -1)):
        down = method.down[stage]
        fast = (down.s @ down.t)[:, index]
        for task in range(len(NANO)):
            expected = sum(torch.kron(slow[task, i], fast[task, i]) for i in range(4))
            torch.testing.assert_close(adapter._weights[0][task], expected)
    # Fast weights are rank one: s_i (in/n × 1) times t_i (1 × out/n).
    for projection in projections:
        assert projection.s.shape[-1] == projection.t.shape[-2] == 1
        ranks = torch.linalg.matrix_rank(projection.fast_weights().flatten(0, 2))
        assert bool((ranks == 1).all())
    # Every stage sends gradient into the one tensor.
    model.zero_grad()
    sum(o.square().mean() for o in model(torch.randn(1, 3, 64, 64)).values()).backward()
    assert slow.grad is not None and bool(slow.grad.abs().sum() > 0)


def test_phm_adapter_learns_rule_matrices_per_layer_and_full_blocks() -> None:
    method = build("phm-adapter").method
    assert not any(isinstance(m, SharedRules) for m in method.modules())
    for projection in method.down:
        sites = projection.bias.shape[1]
        assert projection.rules.shape == (len(NANO), sites, 4, 4, 4)
        assert projection.blocks.shape[:3] == (len(NANO), sites, 4)
        assert not torch.equal(projection.rules[:, 0], projection.rules[:, 1])


def test_compacter_plus_plus_puts_adapters_after_the_mlp_only() -> None:
    for method, positions in (("compacter", ("drop_path1", "drop_path2")),
                              ("compacter++", ("drop_path2",))):
        model = build(method)
        blocks = list(model.encoder.blocks())
        for site in blocks:
            for branch in ("drop_path1", "drop_path2"):
                modules = list(getattr(getattr(site.block, branch), "modules_after", []))
                assert len(modules) == (branch in positions), (method, branch)
                assert all(isinstance(m, GeneratedAdapter) for m in modules)
        assert len(generated_weights(model)) == len(positions) * len(blocks)


@pytest.mark.parametrize("method", METHODS)
def test_adapters_start_near_the_identity(method: str) -> None:
    # The authors' initialisation (small A_i) is near the identity, not exact; float64 so that
    # the difference is not lost in rounding (Compacter's A_i have std 1e-4).
    images = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        reference = build("decoder-only").double().encoder(images)
        outputs = {}
        for std in ("default", "0"):
            model = build(method, **({} if std == "default" else {"rule_init_std": std}))
            model = model.double()
            model.prepare()
            outputs[std] = model.method.encode(model.encoder, images)["semseg"]
    for near, exact, frozen in zip(outputs["default"], outputs["0"], reference, strict=True):
        assert 0 < (near - frozen).norm() / frozen.norm() < 1e-2
        torch.testing.assert_close(exact, frozen, rtol=0, atol=1e-12)


@pytest.mark.parametrize("method", METHODS)
def test_only_the_method_trains_and_the_backbone_stays_bit_identical(method: str) -> None:
    model = build(method)
    frozen = {n: p.clone() for n, p in model.encoder.named_parameters() if not p.requires_grad}
    start = {n: p.clone() for n, p in model.named_parameters() if p.requires_grad}
    assert all(n.startswith(("method.", "decoders.", "encoder.")) for n in start)
    kinds = {type(m).__name__ for m in model.modules()
             if any(p.requires_grad for p in m.parameters(recurse=False))}
    shared_rules = {"SharedRules"} if method != "phm-adapter" else set()
    assert kinds - {"Conv2d", "BatchNorm2d"} == {"PHMProjection", "TaskLayerNorm"} | shared_rules
    assert sum(isinstance(m, TaskLayerNorm) for m in model.encoder.modules()) == 2 * 8 + 3 + 1
    optimizer = torch.optim.AdamW(trainable(model), lr=1e-2)
    for _ in range(2):
        train_step(model, torch.randn(2, 3, 64, 64), optimizer)
    for name, value in model.encoder.named_parameters():
        if name in frozen:
            assert torch.equal(value, frozen[name]), name
    moved = {n for n, p in model.named_parameters() if p.requires_grad
             and not torch.equal(p, start[n])}
    assert moved == set(start)


@pytest.mark.parametrize("method", METHODS)
def test_loop_and_task_batched_passes_agree(method: str) -> None:
    model = build(method)
    assert_loop_and_batched_agree(model, NANO)


@pytest.mark.parametrize("method", METHODS)
def test_shared_form_holds_one_set_counted_as_shared(method: str) -> None:
    per_task = count_parameters(build(method, PASCAL, "swin-t", 112, meta=True))
    shared = count_parameters(build(method, PASCAL, "swin-t", 112, meta=True, shared="true"))
    assert shared.encoder_task_specific == 0
    assert shared.encoder_shared * TASKS == per_task.encoder_task_specific > 0
    model = build(method, shared="true")
    assert not model.method.task_specific_encoder
    model.prepare()
    features = model.method.encode(model.encoder, torch.randn(1, 3, 64, 64))
    assert all(features[task] is features["semseg"] for task in NANO)


def test_phm_dimension_must_divide_every_width_and_bottleneck() -> None:
    # Swin-T at reduction 8: widths 96·2^s, bottlenecks 12·2^s, so n = 12 (the authors'
    # PHM-Adapter) fits; swin-nano's bottlenecks start at 4.
    build("phm-adapter", PASCAL, "swin-t", 448, meta=True, phm_dim="12")
    with pytest.raises(PebenchError, match=r"valid: 1, 2, 3, 4, 6, 12 "):
        build("compacter", PASCAL, "swin-t", 448, meta=True, phm_dim="8")
    with pytest.raises(PebenchError, match=r"phm_dim=12 must divide .* valid: 1, 2, 4 "):
        build("phm-adapter", phm_dim="12")
    with pytest.raises(PebenchError, match="reduction=3 must divide every stage width"):
        build("compacter", reduction="3")


@pytest.mark.parametrize(("setting", "message"), [
    ("phm_dim=5", "--set phm_dim=5 must divide every stage width of swin-nano (32, 64, 128, "
                  "256) and every bottleneck width at reduction=8 (4, 8, 16, 32); valid: 1, 2, 4"),
    ("phm_dim=0", "phm_dim must be ≥ 1, got 0"),
])
def test_bad_phm_dimension_is_one_line_before_training(
        setting: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    # --weights none: the check must not wait for the embedded weights to be built.
    out = tmp_path / "runs"
    code, _, err = run_cli(["run", "--method", "compacter", "--set", setting, "--steps", "5",
                            "--weights", "none", "--out", str(out), "--quiet"],
                           capsys, monkeypatch)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert message in lines[0]
    assert "Traceback" not in err
    assert not out.exists(), "a rejected setting must not leave a record"
