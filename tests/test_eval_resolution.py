"""Evaluation at the original resolution (``--eval-resolution original``): predictions resized
to each label's own size as the Multi-Task-Learning-PyTorch protocol resizes them, on
hand-computed cases, and the record, the Δm reference and the published rows that know
which resolution a run was evaluated at."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from cli_runner import run_cli
from torch import nn

from pebench.data.base import DATASETS, DatasetInfo
from pebench.data.fixtures import write_fixture
from pebench.evaluate import evaluate
from pebench.loaders import collate_evaluation
from pebench.published import in_published_setting
from pebench.task import get_task

PREDICTED = torch.tensor([[0, 1], [2, 1]])  # class ids the stub model predicts at 2×2


class FixedLogits(nn.Module):
    """A stand-in for MultiTaskModel: the same 2×2 semseg logits for every image."""

    def prepare(self) -> None:
        pass

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = nn.functional.one_hot(PREDICTED, 3).permute(2, 0, 1).float()
        return {"semseg": logits.expand(images.shape[0], -1, -1, -1)}


def test_class_ids_take_the_nearest_source_pixel_as_opencv_does() -> None:
    task = get_task("semseg")
    ids = PREDICTED[None]
    # OpenCV's INTER_NEAREST reads source pixel floor(x · in / out): 3 → 2 reads 0, 0, 1.
    assert task.resize_prediction(ids, (3, 3)).tolist() == [[[0, 0, 1], [0, 0, 1], [2, 2, 1]]]
    assert task.resize_prediction(ids, (4, 4)).tolist() == [[
        [0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 1, 1], [2, 2, 1, 1]]]
    assert task.resize_prediction(ids, (3, 3)).dtype == torch.int64


def test_values_are_resized_bilinearly_with_pixel_centres_aligned() -> None:
    probabilities = torch.tensor([[[[0.0, 1.0]]]])
    # Output centres 0.5, 1.5, 2.5, 3.5 of 4 map to source −0.25, 0.25, 0.75, 1.25 (clamped).
    resized = get_task("saliency").resize_prediction(probabilities, (1, 4))
    torch.testing.assert_close(resized, torch.tensor([[[[0.0, 0.25, 0.75, 1.0]]]]))


def test_normals_are_normalised_again_after_the_resize() -> None:
    normals = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])[None, :, None, :]  # (1,3,1,2)
    resized = get_task("normals").resize_prediction(normals, (1, 4))
    torch.testing.assert_close(resized.norm(dim=1), torch.ones(1, 1, 4))
    expected = torch.tensor([0.75, 0.25, 0.0]) / torch.tensor([0.75, 0.25, 0.0]).norm()
    torch.testing.assert_close(resized[0, :, 0, 1], expected)


def test_each_prediction_is_resized_to_its_own_label() -> None:
    """Two images in one batch, labels of 4×4 (the prediction upsampled: all right) and 3×3
    (one pixel of class 2 predicted as 1): intersections and unions summed over both."""
    perfect = PREDICTED.repeat_interleave(2, 0).repeat_interleave(2, 1)
    small = torch.tensor([[0, 0, 1], [0, 0, 1], [2, 2, 2]])
    batch = collate_evaluation([{"image": torch.zeros(3, 8, 8), "semseg": perfect},
                                {"image": torch.zeros(3, 8, 8), "semseg": small}])
    assert isinstance(batch["semseg"], list) and batch["image"].shape == (2, 3, 8, 8)
    info = DatasetInfo("t", ("semseg",), ("semseg",), {"semseg": 3})
    metrics = evaluate(FixedLogits(), [batch], {"semseg": get_task("semseg")}, info,
                       torch.device("cpu"))
    # class 0: 8 / 8; class 1: (8 + 2) / (8 + 3); class 2: (4 + 2) / (4 + 3)
    assert metrics["semseg"]["mIoU"] == pytest.approx(100 * (1 + 10 / 11 + 6 / 7) / 3)


def test_same_sized_targets_are_still_one_tensor() -> None:
    batch = collate_evaluation([{"image": torch.zeros(3, 4, 4), "semseg": torch.zeros(4, 4)}
                                for _ in range(3)])
    assert batch["semseg"].shape == (3, 4, 4)


def test_validation_labels_keep_their_size_and_training_is_unchanged(tmp_path: Path) -> None:
    fixture = write_fixture("nyud", tmp_path / "nyud")
    source = DATASETS.get("nyud")()
    tasks = ("semseg", "depth", "normals")
    original = source.build("val", fixture.root, 64, tasks, False, eval_resolution="original")
    resized = source.build("val", fixture.root, 64, tasks, False)
    for index, image_id in enumerate(original.ids):  # type: ignore[attr-defined]
        sample, truth = original[index], fixture.targets[image_id]
        assert sample["image"].shape == resized[index]["image"].shape == (3, 64, 64)
        assert torch.equal(sample["semseg"], torch.from_numpy(truth["semseg"]).long())
        assert sample["depth"].shape == (1, *truth["depth"].shape)
        assert sample["normals"].shape == (3, *truth["normals"].shape[:2])
        assert resized[index]["semseg"].shape == (64, 64)
    assert len({original[i]["semseg"].shape for i in range(len(original))}) > 1
    train = source.build("train", fixture.root, 64, tasks, True, eval_resolution="original")
    assert not train.original_labels  # type: ignore[attr-defined]


def test_a_run_records_its_evaluation_resolution(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    fixture = write_fixture("pascal-context", tmp_path / "pc")
    common = ["run", "--method", "decoder-only", "--dataset", "pascal-context", "--data-root",
              str(fixture.root), "--img-size", "64", "--steps", "1", "--batch-size", "2",
              "--weights", "none", "--tasks", "semseg,normals", "--quiet"]
    records = {}
    for resolution in ("input", "original"):
        out = tmp_path / resolution
        code, _, err = run_cli([*common, "--eval-resolution", resolution, "--out", str(out)],
                               capsys, monkeypatch)
        assert code == 0, err
        (path,) = out.glob("*.json")
        records[resolution] = json.loads(path.read_text())
    assert records["original"]["config"]["eval_resolution"] == "original"
    assert records["input"]["config"]["eval_resolution"] == "input"
    assert records["input"]["primary"] != records["original"]["primary"]
    code, shown, _ = run_cli(["compare", "--results", str(tmp_path), "--format", "csv"],
                             capsys, monkeypatch)
    assert code == 0 and "eval_resolution" in shown.splitlines()[0] and ",original," in shown


def test_bad_resolution_and_the_published_rows(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    code, _, err = run_cli(["run", "--method", "lora", "--eval-resolution", "native"], capsys,
                           monkeypatch)
    assert code == 2
    assert err.strip().endswith("unknown --eval-resolution 'native'; valid: input, original.")
    published = ("pascal-context", "swin-t", 448, ("semseg",))
    assert in_published_setting(*published, "input")
    assert not in_published_setting(*published, "original")
    assert in_published_setting(*published)  # a parameter count does not depend on it
