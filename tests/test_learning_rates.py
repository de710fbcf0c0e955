"""Each method's default peak learning rates (its own and its decoders'), and `--lr` and
`--decoder-lr` over them."""

from __future__ import annotations

import pytest
import torch

from pebench.config import RunConfig, method_config
from pebench.data.base import DATASETS
from pebench.defaults import DEFAULT_LR, PEFT_LR
from pebench.method import METHODS, SharableMethod
from pebench.model import build_model
from pebench.schedule import adamw
from pebench.settings import setting
from pebench.train import OptimConfig, Trainer

PARAMETER_EFFICIENT = {"bitfit", "lora", "adapter", "pfeiffer-adapter", "vl-adapter",
                       "phm-adapter", "compacter", "compacter++", "vpt-shallow", "vpt-deep",
                       "peft"}


def default_lr(method: str) -> float:
    lr = RunConfig(method=method).resolved().lr
    assert lr is not None
    return lr


def test_parameter_efficient_methods_and_the_frozen_backbone_share_one_rate() -> None:
    """PEFT_LR (1e-2, pebench/defaults.py has the measurements) for every parameter-efficient
    method born single-task and for the frozen backbone, whose decoders then train as theirs
    do; the full fine-tuning baselines and MTLoRA keep the harness default."""
    sharable = {name for name in METHODS.names()
                if issubclass(METHODS.get(name), SharableMethod)}
    assert sharable | {"peft"} == PARAMETER_EFFICIENT
    for method in PARAMETER_EFFICIENT | {"decoder-only"}:
        assert default_lr(method) == PEFT_LR == 1e-2, method
    for method in ("mtl-full", "single-task", "mtlora"):
        assert default_lr(method) == DEFAULT_LR == 1e-3, method


def test_each_hypernetwork_method_trains_at_its_own_rate_and_its_decoders_at_peft_lr() -> None:
    """Hyperformer's released 3e-4, Polyhistor's 3e-4 and Lite's 5e-4, the rates at which no
    seed collapsed; their decoders at the frozen backbone's rate (methods/hypernetworks.py)."""
    assert default_lr("hyperformer") == 3e-4
    assert default_lr("polyhistor") == 3e-4
    assert default_lr("polyhistor-lite") == 5e-4
    for method in ("hyperformer", "polyhistor", "polyhistor-lite"):
        assert RunConfig(method=method).resolved().decoder_lr == PEFT_LR, method


def test_every_other_method_trains_its_decoders_at_its_own_rate() -> None:
    for method in set(METHODS.names()) - {"hyperformer", "polyhistor", "polyhistor-lite"}:
        resolved = RunConfig(method=method).resolved()
        assert resolved.decoder_lr == resolved.lr, method
    assert RunConfig(method="lora", lr=1e-3).resolved().decoder_lr == 1e-3


def test_lr_and_decoder_lr_override_the_method_defaults() -> None:
    assert RunConfig(method="hyperformer", lr=5e-4).resolved().lr == 5e-4
    assert RunConfig(method="hyperformer", lr=5e-4).resolved().decoder_lr == PEFT_LR
    assert RunConfig(method="hyperformer", decoder_lr=2e-3).resolved().decoder_lr == 2e-3
    assert RunConfig(method="lora", lr=1e-3).resolved().lr == 1e-3
    assert RunConfig(method="lora", decoder_lr=3e-3).resolved().decoder_lr == 3e-3


def test_the_optimiser_trains_the_decoders_at_their_rate_and_the_rest_at_the_method_s() -> None:
    info = DATASETS.get("synthetic").info
    model = build_model("polyhistor-lite", method_config("polyhistor-lite", {}), "swin-nano", 64,
                        ("semseg", "normals"), info)
    optim = OptimConfig(lr=5e-4, weight_decay=0.05, warmup_fraction=0.0, clip_grad_norm=5.0,
                        decoder_lr=1e-2)
    trainer = Trainer(model, {}, 10, optim, torch.device("cpu"))
    rate_of = {id(p): group["initial_lr"] for group in trainer.optimizer.param_groups
               for p in group["params"]}
    decoders = {id(p) for p in model.decoders.parameters()}
    trained = [p for p in model.parameters() if p.requires_grad]
    assert len(rate_of) == len(trained)
    assert {rate_of[id(p)] for p in trained if id(p) in decoders} == {1e-2}
    assert {rate_of[id(p)] for p in trained if id(p) not in decoders} == {5e-4}


@pytest.mark.parametrize("lr", [1e-3, 5e-4])
def test_a_record_from_before_decoder_lr_had_its_decoders_at_its_lr(lr: float) -> None:
    """Records written before ``decoder_lr`` existed trained their decoders at ``lr``: their
    setting says so, and a resume rebuilds that config."""
    old = {"method": "polyhistor", "lr": lr, "seed": 0}
    assert setting(old, {})["decoder_lr"] == lr
    assert RunConfig.from_record(old).resolved().decoder_lr == lr


def test_with_one_rate_the_optimiser_keeps_the_two_groups_of_earlier_saved_states() -> None:
    """Decayed, then not decayed, at ``lr``: the order a state saved before ``decoder_lr``
    holds its groups in, so that it still loads; other rates' groups come after."""
    info = DATASETS.get("synthetic").info
    model = build_model("lora", method_config("lora", {}), "swin-nano", 64, ("semseg",), info)
    one = adamw(model, 1e-3, 0.05).param_groups
    assert [(g["lr"], g["weight_decay"]) for g in one] == [(1e-3, 0.05), (1e-3, 0.0)]
    two = adamw(model, 1e-3, 0.05, rates={model.decoders: 1e-2}).param_groups
    assert [(g["lr"], g["weight_decay"]) for g in two] == [(1e-3, 0.05), (1e-2, 0.05),
                                                          (1e-2, 0.0)]  # LoRA's are decayed
