"""The embedded benchmark is learnable yet not trivial, at the default budget (300 steps).

These runs take about a minute in all on two CPU cores, and rebuilding the embedded weights
from their recipe about two more; they guard the synthetic scenes, the pretext weights and
the training loop together.

Margins. Another CPU's float32 kernels round differently, which perturbs a training run about
as much as another seed does, so every threshold below holds over seeds 0-2 (measured with
``benchmarks/all_methods.sh``, 2026-12-03), not only for the seed 0 the tests run. The floors
are the better of the untrained model and each task's best constant prediction
(``pebench.constant_baseline``: semseg 8.32, human parts 10.68, saliency 13.92, normals
26.06°; the untrained model scores lower on every task):

==========================================  =================  =========
quantity (``mtl-full`` = full, seeds 0-2)   measured           threshold
==========================================  =================  =========
semseg full - floor                         31.20 - 32.12      > 15
human parts full - floor                    12.57 - 13.59      > 6
saliency full - floor                       24.14 - 25.15      > 15
normals floor - full                        5.94° - 6.33°      > 3°
semseg full - frozen                        7.13 - 11.48       > 4
human parts full - frozen                   10.15 - 11.29      > 5
saliency full - frozen                      2.35 - 3.39        > 1
normals frozen - full                       3.23° - 3.46°      > 1.5°
Δm(frozen pretext, frozen random), 1e-3     1.63 - 7.99 %      > 1 %
|Δm(rebuilt) - Δm(shipped)|, 1e-3           (see below)        < 3 %
==========================================  =================  =========

The frozen backbone trains at its default rate (1e-2, ``pebench.defaults.PEFT_LR``) in the
checks against full fine-tuning, and at ``TRANSFER_LR`` = 1e-3 in the transfer checks: at
1e-2 its decoders learned from random features as well as from the pretext weights on the
scenes before the present lights (Δm of the pretext weights over random ones +1.17, -1.73,
-0.88 % for seeds 0-2), so no margin there could tell a poor rebuild from a good one. At
1e-3 too, random weights score higher on human parts and normals (seed 0: 13.98 / 22.78°
against 13.13 / 23.57°), the pretext ones on semseg and saliency.

Against random weights, the fp32 build on this machine and the shipped fp16 file differ by
the fp16 rounding only (Δm 6.98 % and 7.05 %, seed 0, on the scenes before people stood
head up). Another CPU's rebuild differs by more; the bound of 3 points is a choice, below the
6.4-point spread that the training seed alone gives (above). A rebuild on this machine
scored 5.78 % against the shipped file's 7.99 % (seed 0, 2026-12-03), outside the 2 points
this bound was on the earlier scenes, whose seed spread was 3.3 points.

Normals are learned least: full fine-tuning ends about 6° below the best constant
prediction (19.92° against 26.06°), although a prediction at the finest tap's resolution
would score far lower (8.4° on the scenes before the present lights).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pebench.api import run
from pebench.config import RunConfig
from pebench.constant_baseline import constant_primaries
from pebench.data.base import DATASETS
from pebench.pretrain import PretrainConfig, pretrain
from pebench.primary import delta_m
from pebench.ranking import ahead
from pebench.task import get_task

TASKS = ("semseg", "human_parts", "saliency", "normals")
HIGHER = {t: get_task(t).higher_is_better for t in TASKS}
# By how much each task's score must clear a bar (points, or degrees for normals); the
# module docstring has the seed-to-seed figures each margin was chosen from.
OVER_THE_FLOORS = {"semseg": 15.0, "human_parts": 6.0, "saliency": 15.0, "normals": 3.0}
OVER_A_FROZEN_BACKBONE = {"semseg": 4.0, "human_parts": 5.0, "saliency": 1.0, "normals": 1.5}
TRANSFER_LR = 1e-3  # the frozen backbone's rate in the transfer checks (module doc)


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
        # The transfer checks, at the rate where the weights matter (module doc).
        "transfer-shipped": RunConfig(method="decoder-only", weights=str(nano_weights),
                                      lr=TRANSFER_LR, out=out),
        "transfer-rebuilt": RunConfig(method="decoder-only", weights=str(rebuilt_weights),
                                      lr=TRANSFER_LR, out=out),
        "transfer-random": RunConfig(method="decoder-only", weights="none", lr=TRANSFER_LR,
                                     out=out),
        "full": RunConfig(method="mtl-full", weights=str(nano_weights), out=out),
    }
    return {name: run(config, show_progress=False).primary for name, config in settings.items()}


def test_every_task_is_learned_beyond_the_untrained_model_and_the_best_constant(
        primaries: dict) -> None:
    """The floors of ``benchmarks/ranking.py``: the untrained model and each task's best
    constant prediction on the validation split, whichever scores better."""
    default_size = DATASETS.get("synthetic").info.default_img_size  # the runs' size
    constant = constant_primaries("synthetic", TASKS, default_size)
    trained, untrained = primaries["full"], primaries["untrained"]
    for task in TASKS:
        higher = HIGHER[task]
        margin = min(ahead(trained[task], untrained[task], higher),
                     ahead(trained[task], constant[task], higher))
        assert margin > OVER_THE_FLOORS[task], (task, trained, untrained, constant)


def test_full_fine_tuning_beats_a_frozen_backbone_on_every_task(primaries: dict) -> None:
    full, frozen = primaries["full"], primaries["frozen"]
    for task in TASKS:
        assert ahead(full[task], frozen[task], HIGHER[task]) > OVER_A_FROZEN_BACKBONE[task], \
            (task, full, frozen)


def test_pretext_weights_beat_random_weights_for_a_frozen_backbone(primaries: dict) -> None:
    assert delta_m(primaries["transfer-shipped"], primaries["transfer-random"], HIGHER) > 1.0, \
        primaries


def test_rebuilt_weights_transfer_as_well_as_the_shipped_ones(primaries: dict) -> None:
    """Not bit-identical (another CPU rounds the pretraining differently), but as useful: a
    frozen backbone on a fresh rebuild beats random weights by the shipped file's margin."""
    shipped = delta_m(primaries["transfer-shipped"], primaries["transfer-random"], HIGHER)
    rebuilt = delta_m(primaries["transfer-rebuilt"], primaries["transfer-random"], HIGHER)
    assert rebuilt > 1.0 and abs(rebuilt - shipped) < 3.0, (shipped, rebuilt, primaries)
