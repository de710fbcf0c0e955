"""Shared fixtures. Every test gets its own empty cache directory (XDG_CACHE_HOME), except
that the embedded swin-nano weights are built once per session in the real user cache (as
``pebench pretrain`` would) and handed to tests as an explicit file path."""

from __future__ import annotations

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
