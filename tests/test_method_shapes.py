"""Every registered method builds on every Swin size and predicts each task's channels at the
input resolution (a forward pass on a small input; the meta device for the giants)."""

from __future__ import annotations

import pytest
import torch
from method_testing import PASCAL, build

from pebench.method import METHODS
from pebench.params import count_parameters

SWINS = [("swin-nano", 96), ("swin-t", 112), ("swin-s", 112), ("swin-b", 112)]
# Hyperformer's generators (d_max² / 2 · 129 parameters each) and single-task's four encoder
# copies are too big to initialise in a CPU test on the large Swins, and DiTASK decomposes
# every weight matrix when attached (23.6 s for Swin-B on a 2-core CPU): built on the meta
# device.
BUILT_ON_META = {"ditask", "hyperformer", "single-task"}


@pytest.mark.parametrize("method", METHODS.names())
@pytest.mark.parametrize(("backbone", "img_size"), SWINS)
def test_output_shapes_on_every_swin(method: str, backbone: str, img_size: int) -> None:
    if backbone != "swin-nano" and method in BUILT_ON_META:
        model = build(method, PASCAL, backbone, img_size, meta=True)
        assert count_parameters(model).trainable > 0
        return
    model = build(method, PASCAL, backbone, img_size).eval()
    with torch.no_grad():
        model.prepare()
        out = model(torch.randn(1, 3, img_size, img_size))
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        t: (1, c, img_size, img_size) for t, c in PASCAL.items()}


def tensors_held(obj: object) -> list[str]:
    """Plain attributes of ``obj`` that hold a tensor (parameters and buffers excluded)."""
    return [name for name, value in vars(obj).items() if isinstance(value, torch.Tensor)]


@pytest.mark.parametrize("method", METHODS.names())
def test_no_activation_is_kept_on_a_module_between_calls(method: str) -> None:
    """A method passes what one part of its forward needs on to the next as a value; a
    tensor left on a module would keep the last batch's graph alive and leak into the next
    call."""
    model = build(method, PASCAL, "swin-nano", 64).train()
    model.prepare()
    sum(out.sum() for out in model(torch.randn(2, 3, 64, 64)).values()).backward()
    held = {f"{name or 'model'}.{attr}": None for name, module in model.named_modules()
            for attr in tensors_held(module)}
    held.update({f"method.{attr}": None for attr in tensors_held(model.method)})
    assert not held, sorted(held)
