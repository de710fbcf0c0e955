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
# copies are too big to initialise in a CPU test on the large Swins: built on the meta device.
BUILT_ON_META = {"hyperformer", "single-task"}


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
