"""Real ``pebench`` processes for the tests that signal, kill or race them."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Small enough to finish in seconds on 2 cores, long enough (≈ 0.1 s a step) to be caught
# mid-training. LoRA trains encoder tensors, decoders with BatchNorm statistics, AdamW moments.
SMALL_RUN = ["--method", "lora", "--img-size", "64", "--batch-size", "2", "--eval-batch-size",
             "64", "--weights", "none", "--quiet"]


def pebench_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "pebench", *args]


def start(args: list[str], **kwargs: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(pebench_command(*args), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


def finish(args: list[str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(pebench_command(*args), capture_output=True, text=True,
                          timeout=timeout)


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 120,
             process: subprocess.Popen[str] | None = None) -> None:
    """Poll ``condition`` every 20 ms; fail naming ``what`` if it never holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the process ended (exit {process.returncode}) before "
                                 f"{what}: {process.stderr.read() if process.stderr else ''}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def records(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


def only_record(folder: Path) -> dict[str, Any]:
    (record,) = records(folder)
    return record


def states(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.state.pt"))
