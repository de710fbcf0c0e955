"""Shared fixtures. Every test gets its own empty cache directory (XDG_CACHE_HOME); the
embedded swin-nano weights are the shipped file, handed to tests as an explicit path."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from pebench.pretrain import ensure_embedded_weights


@pytest.fixture(scope="session")
def nano_weights() -> Path:
    return ensure_embedded_weights("swin-nano", show_progress=False)


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                   request: pytest.FixtureRequest) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    return cache


def fail_training_at(monkeypatch: pytest.MonkeyPatch, step: int) -> Callable[..., dict]:
    """Make the training step after ``step`` steps raise, as an out-of-memory error would;
    returns the real step, to put back."""
    from pebench.train import Trainer

    original = Trainer.train_step

    def exploding(self: Trainer, batch: dict) -> dict:
        if self.step == step:
            raise RuntimeError("simulated out-of-memory")
        return original(self, batch)

    monkeypatch.setattr(Trainer, "train_step", exploding)
    return original


def interrupted_at_start(config: object) -> str:
    """Run ``config`` (a RunConfig) with a stop asked for up front: a real ``interrupted``
    record and state at step 0, in a second; returns its run id."""
    from pebench.api import run
    from pebench.interrupt import RunInterrupted, StopRequest

    stop = StopRequest()
    stop.request("SIGTERM")
    with pytest.raises(RunInterrupted) as interrupted:
        run(config, show_progress=False, stop=stop)  # type: ignore[arg-type]
    return interrupted.value.record.run_id
