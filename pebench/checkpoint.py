"""What a run writes of its model: the final trainable weights (safetensors) and the
resumable training state (everything needed to continue bit-identically)."""

from __future__ import annotations

import pickle
import zipfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

from pebench.atomic import atomic_write
from pebench.errors import PebenchError

STATE_FORMAT = "pebench.state/1"


def trainable_tensors(model: nn.Module, every_buffer: bool = False) -> dict[str, torch.Tensor]:
    """The trainable parameters, plus the persistent buffers of modules that own trainable
    parameters (BatchNorm statistics of the decoders), or every persistent buffer."""
    params = dict(model.named_parameters())
    owners = {name for name, module in model.named_modules()
              if any(p.requires_grad for p in module.parameters(recurse=False))}
    tensors = {}
    for key, value in model.state_dict().items():  # persistent buffers only
        param = params.get(key)
        trainable = param is not None and param.requires_grad
        buffer = param is None and (every_buffer or key.rpartition(".")[0] in owners)
        if trainable or buffer:
            tensors[key] = value.detach().cpu().contiguous()
    return tensors


def save_trainable_checkpoint(model: nn.Module, path: Path) -> None:
    """Enough, with the frozen backbone weights, to rebuild the evaluated model."""
    tensors = trainable_tensors(model)
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp)))


@dataclass
class TrainingState:
    """A run between two steps. Its setting is in the run's record; ``weights_sha256`` names
    the backbone weights it was trained from, which a resume must match."""

    run_id: str
    weights_sha256: str | None
    step: int
    model: dict[str, torch.Tensor]
    trainer: dict[str, Any]
    rng: list[dict[str, Any]]  # the generators of every rank, in rank order
    eval_history: list[dict[str, Any]]
    train_s: float
    data_s: float = 0.0  # of train_s, waiting for batches (0 in states from before the field)
    saved_at: str = ""

    def save(self, path: Path) -> None:
        self.saved_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        payload = {"format": STATE_FORMAT, **self.__dict__}
        atomic_write(path, lambda tmp: torch.save(payload, tmp))

    @classmethod
    def load(cls, path: Path) -> TrainingState:
        """Read a state file; PebenchError naming the file when it is not one."""
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise PebenchError(f"training state '{path}' does not exist.") from None
        except (OSError, RuntimeError, EOFError, pickle.UnpicklingError,
                zipfile.BadZipFile) as exc:
            raise PebenchError(f"training state '{path}' cannot be read ({exc}); it is "
                               "corrupt or not a pebench state file.") from None
        if not isinstance(payload, dict) or payload.get("format") != STATE_FORMAT:
            raise PebenchError(f"'{path}' is not a {STATE_FORMAT} training state.")
        payload.pop("format")
        return cls(**payload)

    def rng_of(self, rank: int) -> dict[str, Any]:
        """The generator states rank ``rank`` restores. A run resumed on another number of
        processes reuses them round-robin: it trains on, but no longer bit for bit."""
        states = [self.rng] if isinstance(self.rng, dict) else self.rng  # single-process v1
        return states[rank % len(states)]

    def load_model(self, model: nn.Module) -> None:
        """Put the saved tensors into ``model``; every saved name must exist there."""
        unexpected = sorted(set(self.model) - set(model.state_dict()))
        if unexpected:
            raise PebenchError(f"the training state of run {self.run_id} does not fit the "
                               f"model built for it (unknown tensors: {', '.join(unexpected[:3])}"
                               "); it was written by another pebench version.")
        model.load_state_dict(self.model, strict=False)
