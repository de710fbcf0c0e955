"""Run records: one JSON file per run, written atomically, plus a trainable-weights checkpoint.

The record schema is documented in the README ("Result files"). Records are data users
publish from: they are written to a temporary file and renamed, never half-written, and a
failed run is recorded as failed with its error, never as a result.
"""

from __future__ import annotations

import dataclasses
import json
import math
import platform
import subprocess
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import numpy
import timm
import torch
from safetensors.torch import save_file
from torch import nn

import pebench
from pebench.atomic import atomic_write, atomic_write_text

SCHEMA = "pebench.run/1"
Status = Literal["running", "completed", "failed"]


@dataclass
class RunRecord:
    run_id: str
    created_at: str
    method: str
    method_config: dict[str, Any]
    tasks: list[str]
    dataset: str
    backbone: str
    img_size: int
    seed: int
    steps: int
    config: dict[str, Any]
    status: Status = "running"
    error: str | None = None
    weights: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    primary: dict[str, float] = field(default_factory=dict)
    delta_m: float | None = None
    delta_m_reference: dict[str, Any] | None = None
    params: dict[str, int] = field(default_factory=dict)
    timing: dict[str, float] = field(default_factory=dict)
    eval_history: list[dict[str, Any]] = field(default_factory=list)
    peak_memory_mb: float | None = None
    peak_memory_source: str | None = None
    checkpoint: str | None = None
    versions: dict[str, str] = field(default_factory=dict)
    git_commit: str | None = None
    schema: str = SCHEMA

    def to_json(self) -> str:
        fields = dataclasses.asdict(self)
        ordered = {"schema": fields.pop("schema"), **fields}  # readers check the schema first
        return json.dumps(_finite_or_null(ordered), indent=2, allow_nan=False, default=str)

    def write(self, out_dir: Path) -> Path:
        path = out_dir / f"{self.run_id}.json"
        atomic_write_text(path, self.to_json() + "\n")
        return path


def _finite_or_null(value: Any) -> Any:
    """JSON has no NaN: a metric that could not be computed (no valid pixel) becomes null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite_or_null(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite_or_null(v) for v in value]
    return value


def new_run_id(method: str, dataset: str, backbone: str, seed: int) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    return f"{stamp}-{method}-{dataset}-{backbone}-s{seed}-{uuid.uuid4().hex[:6]}"


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def software_versions() -> dict[str, str]:
    return {"pebench": pebench.__version__, "python": platform.python_version(),
            "torch": torch.__version__, "timm": timm.__version__, "numpy": numpy.__version__}


def git_commit() -> str | None:
    """The commit of the pebench source tree, with ``-dirty`` when it has local changes;
    None for an installed copy outside a git checkout."""
    source = Path(pebench.__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=source, capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=source, capture_output=True, text=True, timeout=10,
                               check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{commit}-dirty" if dirty else commit


def save_trainable_checkpoint(model: nn.Module, path: Path) -> None:
    """The trainable parameters plus the buffers of modules that own trainable parameters
    (BatchNorm statistics of the decoders): enough, with the frozen backbone weights, to
    rebuild the evaluated model."""
    params = dict(model.named_parameters())
    owners = {name for name, module in model.named_modules()
              if any(p.requires_grad for p in module.parameters(recurse=False))}
    tensors = {}
    for key, value in model.state_dict().items():  # persistent buffers only
        param = params.get(key)
        trainable = param is not None and param.requires_grad
        owned_buffer = param is None and key.rpartition(".")[0] in owners
        if trainable or owned_buffer:
            tensors[key] = value.detach().cpu().contiguous()
    contiguous = tensors
    atomic_write(path, lambda tmp: save_file(contiguous, str(tmp)))
