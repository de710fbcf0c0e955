"""Each method's default peak learning rate, and `--lr` over it."""

from __future__ import annotations

from pebench.config import RunConfig
from pebench.defaults import DEFAULT_LR, PEFT_LR
from pebench.method import METHODS, SharableMethod

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


def test_each_hypernetwork_method_trains_at_its_own_rate() -> None:
    """Hyperformer's released 3e-4; Polyhistor's and Lite's 5e-4, which collapsed fewer
    seeds than 1e-3 (methods/hypernetworks.py)."""
    assert default_lr("hyperformer") == 3e-4
    assert default_lr("polyhistor-lite") == 5e-4
    assert default_lr("polyhistor") == 5e-4


def test_lr_overrides_the_method_default() -> None:
    assert RunConfig(method="hyperformer", lr=5e-4).resolved().lr == 5e-4
    assert RunConfig(method="lora", lr=1e-3).resolved().lr == 1e-3
