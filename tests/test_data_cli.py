"""`pebench data fixture`, `pebench data check` and `pebench run` on the real formats: clean
fixtures pass and run end to end, and every planted corruption is caught and named."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from cli_runner import run_cli
from PIL import Image

from pebench.data.fixtures import write_fixture

PASCAL_TRAIN = "2008_000000"
NYUD_TRAIN = "000000"


def _garbage(path: Path) -> None:
    path.write_bytes(b"\x00\x01 this is not the file you are looking for " * 4)


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])


def _resize_png(path: Path) -> None:
    with Image.open(path) as image:
        image.resize((image.width - 8, image.height)).save(path)


def _png_value(value: int) -> Callable[[Path], None]:
    def plant(path: Path) -> None:
        with Image.open(path) as image:
            array = np.array(image)
        array[0, 0] = value
        Image.fromarray(array).save(path)
    return plant


def _mat_without_labelmap(path: Path) -> None:
    scipy.io.savemat(str(path), {"Labels": np.zeros((4, 4), dtype=np.uint16)})


def _npy(value: np.ndarray) -> Callable[[Path], None]:
    return lambda path: np.save(path, value)


# (dataset, file relative to the root, corruption, problem title in the report)
CORRUPTIONS = [
    ("pascal-context", f"JPEGImages/{PASCAL_TRAIN}.jpg", _garbage, "unreadable files"),
    ("pascal-context", f"JPEGImages/{PASCAL_TRAIN}.jpg", _truncate, "unreadable files"),
    ("pascal-context", f"semseg/VOC12/{PASCAL_TRAIN}.png", _resize_png, "of the wrong size"),
    ("pascal-context", f"semseg/VOC12/{PASCAL_TRAIN}.png", _png_value(33), "content outside"),
    ("pascal-context", f"sal_distill/{PASCAL_TRAIN}.png", Path.unlink, "missing files"),
    ("pascal-context", "ImageSets/Context/val.txt", Path.unlink, "missing files"),
    ("pascal-context", f"human_parts/{PASCAL_TRAIN}.mat", _garbage, "unreadable files"),
    ("pascal-context", f"pascal-context/trainval/{PASCAL_TRAIN}.mat", _mat_without_labelmap,
     "content outside"),
    ("nyud", f"segmentation/{NYUD_TRAIN}.png", _png_value(41), "content outside"),
    ("nyud", f"depth/{NYUD_TRAIN}.npy", _npy(np.zeros((48, 64, 2), np.float32)),
     "content outside"),
    ("nyud", f"normals/{NYUD_TRAIN}.npy", _garbage, "unreadable files"),
    ("nyud", f"edge/{NYUD_TRAIN}.npy", _npy(np.zeros((48, 60), np.float32)), "of the wrong size"),
    ("nyud", "gt_sets/train.txt", Path.unlink, "missing files"),
]


def _ids(corruption: tuple) -> str:
    dataset, relative, plant, _ = corruption
    name = getattr(plant, "__name__", "npy").strip("_")
    return f"{dataset}:{relative.split('/')[0]}:{name}"


@pytest.mark.parametrize("name", ["pascal-context", "nyud"])
def test_fixture_command_writes_a_dataset_that_checks_clean(
        tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / name
    code, out, err = run_cli(["data", "fixture", "--dataset", name, str(root)], capsys,
                             monkeypatch)
    assert code == 0, err
    assert "6 train, 4 val" in out
    code, out, err = run_cli(["data", "check", "--dataset", name, "--data-root", str(root),
                              "--quiet"], capsys, monkeypatch)
    assert code == 0, out + err
    assert "ok: every file" in out
    assert "official release has" in out  # a 6-image split is reported, not failed
    expected_rows = 2 * (1 + (5 if name == "pascal-context" else 4))
    assert sum(line.startswith(("│ train", "│ val")) for line in out.splitlines()) == \
        expected_rows


def test_fixture_refuses_a_non_empty_directory(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    code, out, err = run_cli(["data", "fixture", "--dataset", "nyud", str(tmp_path)], capsys,
                             monkeypatch)
    assert code == 2 and out == ""
    assert err.strip().startswith("error: ") and "not an empty directory" in err
    assert len(err.strip().splitlines()) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


@pytest.mark.parametrize("corruption", CORRUPTIONS, ids=_ids)
def test_check_names_every_planted_corruption(tmp_path: Path, corruption: tuple,
                                              capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    dataset, relative, plant, title = corruption
    root = write_fixture(dataset, tmp_path / dataset).root
    plant(root / relative)
    code, out, err = run_cli(["data", "check", "--dataset", dataset, "--data-root", str(root),
                              "--quiet"], capsys, monkeypatch)
    assert code == 1, out
    assert title in out
    assert str(root / relative) in out
    assert "Traceback" not in out + err
    assert err.strip().startswith("error: 1 problem(s)")


def test_check_lists_the_first_problems_then_a_count(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    root = write_fixture("nyud", tmp_path / "nyud").root
    for path in sorted((root / "depth").iterdir())[:7]:
        path.unlink()
    code, out, _ = run_cli(["data", "check", "--dataset", "nyud", "--data-root", str(root),
                            "--quiet"], capsys, monkeypatch)
    assert code == 1
    assert "missing files (7):" in out and "and 2 more" in out
    assert sum("is missing" in line for line in out.splitlines()) == 5


@pytest.mark.parametrize(("argv", "message"), [
    (["--dataset", "synthetic", "--data-root", "."], "nothing to check"),
    (["--dataset", "nyud", "--data-root", "/no/such/folder"], "is not a directory"),
    (["--dataset", "nyu", "--data-root", "."], "Did you mean 'nyud'?"),
    (["--dataset", "nyud", "--data-root", ".", "--tasks", "saliency"], "no labels for saliency"),
])
def test_check_usage_errors_are_one_line_exit_2(argv: list[str], message: str,
                                                capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, err = run_cli(["data", "check", *argv, "--quiet"], capsys, monkeypatch)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and message in err


def _run(root: Path, dataset: str, out: Path, capsys: pytest.CaptureFixture[str],
         monkeypatch: pytest.MonkeyPatch) -> tuple[int, str, str]:
    # Batches of 4: the fixture's training split holds 6 images.
    return run_cli(["run", "--dataset", dataset, "--data-root", str(root), "--steps", "2",
                    "--method", "decoder-only", "--backbone", "swin-nano", "--img-size", "64",
                    "--batch-size", "4", "--weights", "none", "--out", str(out), "--quiet"],
                   capsys, monkeypatch)


@pytest.mark.parametrize("dataset", ["pascal-context", "nyud"])
def test_run_end_to_end_on_the_fixture(tmp_path: Path, dataset: str,
                                       capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    root = write_fixture(dataset, tmp_path / "data").root
    code, _, err = _run(root, dataset, tmp_path / "runs", capsys, monkeypatch)
    assert code == 0, err
    (record_path,) = (tmp_path / "runs").glob("*.json")
    record = json.loads(record_path.read_text())
    assert record["status"] == "completed" and record["steps"] == 2
    from pebench.data.infos import dataset_info

    assert set(record["metrics"]) == set(dataset_info(dataset).default_tasks)
    assert all(np.isfinite(value) for value in record["primary"].values())


# (file, how it is spoilt, the error, whether it is found before the run starts: then it is
# refused as bad input and no record is left; a file read during training fails the run)
RUN_CORRUPTIONS = [
    (f"JPEGImages/{PASCAL_TRAIN}.jpg", _truncate, "is unreadable", False),
    (f"sal_distill/{PASCAL_TRAIN}.png", Path.unlink, "misses the file", True),
    ("ImageSets/Context/train.txt", Path.unlink, "does not exist", True),
    (f"semseg/VOC12/{PASCAL_TRAIN}.png", _resize_png, "labels must have their image's size",
     False),
    # Read up front: the index of images with person parts is built before training.
    (f"human_parts/{PASCAL_TRAIN}.mat", _garbage, "is not a readable .mat file", True),
]


@pytest.mark.parametrize("corruption", RUN_CORRUPTIONS,
                         ids=[c[0].split("/")[0] for c in RUN_CORRUPTIONS])
def test_run_on_a_corrupt_file_is_one_line_naming_it(tmp_path: Path, corruption: tuple,
                                                     capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    relative, plant, message, before_start = corruption
    root = write_fixture("pascal-context", tmp_path / "data").root
    plant(root / relative)
    code, _, err = _run(root, "pascal-context", tmp_path / "runs", capsys, monkeypatch)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert str(root / relative) in lines[0] and message in lines[0]
    records = list((tmp_path / "runs").glob("*.json"))
    if before_start:
        assert records == []
        return
    (record_path,) = records
    record = json.loads(record_path.read_text())
    assert record["status"] == "failed" and str(root / relative) in record["error"]
