"""Checks of the machine side of a run (where it writes, which device it uses), made before
anything is built: no bad setting may cost a training run."""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path

import torch

from pebench.errors import PebenchError


def check_output_dir(out: Path) -> None:
    """``out`` is, or can be made, a writable directory. Folders made to find out are
    removed again, so a rejected run leaves nothing behind."""
    made = []
    existing = out
    while not existing.exists():
        made.append(existing)
        existing = existing.parent
    if not existing.is_dir():
        where = "is a file" if existing == out else f"is under '{existing}', which is a file"
        raise PebenchError(f"--out '{out}' {where}; give a directory for the run records.")
    try:
        _probe(out)
    except OSError as exc:
        raise PebenchError(f"--out '{out}' cannot be written ({exc.strerror or exc}); give a "
                           "writable directory.") from None
    finally:
        for folder in made:  # deepest first
            with contextlib.suppress(OSError):  # not empty: someone else's now
                folder.rmdir()


def _probe(out: Path, attempts: int = 3) -> None:
    """Make ``out`` and write a temporary file in it. Runs started together (a sweep's jobs)
    check the same new folder, and one's clean-up may remove it between another's mkdir and
    its probe: a folder that vanished is made again."""
    for attempt in range(attempts):
        out.mkdir(parents=True, exist_ok=True)
        try:
            with tempfile.TemporaryFile(dir=out):
                return
        except FileNotFoundError:
            if attempt == attempts - 1:
                raise


def resolve_device(name: str) -> torch.device:
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N`` as a device this machine has."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise PebenchError(f"--device {name} was asked for but CUDA is not available here; "
                               "use --device cpu or auto.")
        index = int(name.partition(":")[2] or 0)
        count = torch.cuda.device_count()
        if index >= count:
            raise PebenchError(f"--device {name}: this machine has {count} CUDA device(s), "
                               f"cuda:0 to cuda:{count - 1}.")
    return torch.device(name)
