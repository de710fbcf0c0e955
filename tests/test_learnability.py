"""The embedded benchmark is learnable yet not trivial, at the default budget (300 steps).

These runs take about a minute in all on two CPU cores; they guard the synthetic scenes, the
pretext weights and the training loop together.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pebench.api import run
from pebench.config import RunConfig
from pebench.evaluate import delta_m
from pebench.task import get_task

TASKS = ("semseg", "human_parts", "saliency", "normals")
HIGHER = {t: get_task(t).higher_is_better for t in TASKS}


@pytest.fixture(scope="module")
def primaries(nano_weights: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("runs")
    settings = {
        "untrained": RunConfig(method="mtl-full", steps=0, weights=str(nano_weights), out=out),
        "frozen": RunConfig(method="decoder-only", weights=str(nano_weights), out=out),
        "frozen-random": RunConfig(method="decoder-only", weights="none", out=out),
        "full": RunConfig(method="mtl-full", weights=str(nano_weights), out=out),
    }
    return {name: run(config, show_progress=False).primary for name, config in settings.items()}


def test_training_beats_the_untrained_model_on_every_task(primaries: dict) -> None:
    trained, untrained = primaries["full"], primaries["untrained"]
    for task in ("semseg", "human_parts", "saliency"):
        assert trained[task] > 3 * untrained[task], (task, trained, untrained)
    assert trained["normals"] < untrained["normals"] - 40, (trained, untrained)


def test_full_fine_tuning_beats_a_frozen_backbone(primaries: dict) -> None:
    full, frozen = primaries["full"], primaries["frozen"]
    assert delta_m(full, frozen, HIGHER) > 3.0, (full, frozen)
    assert full["semseg"] > frozen["semseg"] + 3.0
    assert full["normals"] < frozen["normals"]


def test_pretext_weights_beat_random_weights_for_a_frozen_backbone(primaries: dict) -> None:
    assert delta_m(primaries["frozen"], primaries["frozen-random"], HIGHER) > 1.0, primaries
