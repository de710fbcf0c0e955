"""Numeric precision of a run: ``fp32``, or autocast to ``bf16`` / ``fp16``.

Under autocast the matrix products and convolutions of the forward pass (the hypernetworks'
``prepare`` included) run in 16 bits while the parameters, the optimiser state, the losses
(:func:`pebench.task.loss_precision`) and the evaluation meters stay in float32 or wider.
fp16 trains with a gradient scaler, because its 5-bit exponent underflows small gradients;
bf16 has float32's exponent and needs none. bf16 autocast works on every CPU torch supports
(slowly where the CPU has no bf16 instructions); on CUDA it needs an Ampere or newer GPU.
"""

from __future__ import annotations

import contextlib
from typing import Literal

import torch

from pebench.errors import PebenchError

Precision = Literal["fp32", "bf16", "fp16"]  # pebench.defaults.PRECISIONS
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """The forward-pass context of ``precision`` on ``device`` (a no-op for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=_DTYPES[precision])


def grad_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler:
    """A gradient scaler, enabled only for fp16 (a disabled one passes everything through)."""
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16")


def check_precision(precision: str, device: torch.device) -> None:
    """Refuse, in one line, a precision this device cannot run; accept it wherever it works."""
    if device.type == "cuda" and precision == "bf16" and not torch.cuda.is_bf16_supported():
        raise PebenchError(f"{torch.cuda.get_device_name(device)} has no bf16 support; use "
                           "--precision fp16 (with a gradient scaler) or fp32.")
    if device.type not in ("cpu", "cuda") and precision != "fp32":
        raise PebenchError(f"--precision {precision} is supported on cpu and cuda, not on "
                           f"{device.type}; use --precision fp32.")
