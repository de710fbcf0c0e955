"""The embedded benchmark is learnable yet not trivial, at the default budget (300 steps).

These runs take about a minute in all on two CPU cores, and rebuilding the embedded weights
from their recipe about two more; they guard the synthetic scenes, the pretext weights and
the training loop together.

Margins. Another CPU's float32 kernels round differently, which perturbs a training run about
as much as another seed does, so every threshold below holds over seeds 0-3 (measured with
``pebench sweep``, 2026-12-02), not only for the seed 0 the tests run:

=================================  ===================  =========
quantity                           seeds 0-3            threshold
=================================  ===================  =========
semseg trained / untrained         6.3 - 30.2           > 3
saliency trained / untrained       3.80 - 3.97          > 3
normals untrained - trained        71.7° - 93.8°        > 40°
Δm(full, frozen)                   8.4 - 12.7 %         > 3 %
semseg full - frozen               5.4 - 7.8            > 3
normals frozen - full              0.83° - 1.11°        > 0
Δm(frozen pretext, frozen random)  3.3 - 6.2 %          > 1 %
|Δm(rebuilt) - Δm(shipped)|        (see below)          < 2 %
=================================  ===================  =========

Against random weights, the fp32 build on this machine and the shipped fp16 file differ by
the fp16 rounding only (Δm 6.98 % and 7.05 %, seed 0, 2026-12-03). Another CPU's rebuild
differs by more; the bound of 2 points is a choice, below the 2.9-point spread that the
training seed alone gives (3.3 - 6.2 % above).

Human parts stay at the all-background level at this budget (12.0 - 13.9 trained over the four
seeds), so their ratio to the untrained model depends on the untrained decoder's first guess
(2.2 - 9.0 over seeds 0-3): 3.15 for seed 0, a single forward pass that rounding cannot move
by a point, against a trained value that never fell below 12.04 (ratio ≥ 3.8 > 3).

The community's mIoU (every class, an absent one at 0) leaves these figures as they were: on
the embedded validation split every semseg and part class occurs in the labels, and no
human-parts label is all background (109 of its 256 are all ignored, skipped before as now).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pebench.api import run
from pebench.config import RunConfig
from pebench.pretrain import PretrainConfig, pretrain
from pebench.primary import delta_m
from pebench.task import get_task

TASKS = ("semseg", "human_parts", "saliency", "normals")
HIGHER = {t: get_task(t).higher_is_better for t in TASKS}


@pytest.fixture(scope="module")
def rebuilt_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The embedded weights rebuilt from their recipe on this machine (about 2 minutes)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
        return pretrain(PretrainConfig(), show_progress=False)


@pytest.fixture(scope="module")
def primaries(nano_weights: Path, rebuilt_weights: Path,
              tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("runs")
    settings = {
        "untrained": RunConfig(method="mtl-full", steps=0, weights=str(nano_weights), out=out),
        "frozen": RunConfig(method="decoder-only", weights=str(nano_weights), out=out),
        "frozen-rebuilt": RunConfig(method="decoder-only", weights=str(rebuilt_weights),
                                    out=out),
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


def test_rebuilt_weights_transfer_as_well_as_the_shipped_ones(primaries: dict) -> None:
    """Not bit-identical (another CPU rounds the pretraining differently), but as useful: a
    frozen backbone on a fresh rebuild beats random weights by the shipped file's margin."""
    shipped = delta_m(primaries["frozen"], primaries["frozen-random"], HIGHER)
    rebuilt = delta_m(primaries["frozen-rebuilt"], primaries["frozen-random"], HIGHER)
    assert rebuilt > 1.0 and abs(rebuilt - shipped) < 2.0, (shipped, rebuilt, primaries)
