"""The PASCAL-Context and NYUD loaders against fixtures in the real on-disk formats: every
task of every sample, value by value, against what the fixture encoded."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from torch.utils.data import DataLoader

from pebench.data.base import DATASETS
from pebench.data.files import DataFileError
from pebench.data.fixtures import Fixture, write_fixture
from pebench.data.folder import FolderDataset
from pebench.data.infos import NYUD, PASCAL_CONTEXT, dataset_info
from pebench.data.stream import BatchIndexStream, Draw
from pebench.data.transforms import IMAGENET_MEAN, IMAGENET_STD

DATASET_NAMES = ("pascal-context", "nyud")


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Fixture]:
    root = tmp_path_factory.mktemp("datasets")
    return {name: write_fixture(name, root / name) for name in DATASET_NAMES}


def build(name: str, root: Path, split: str, img_size: int = 64,
          tasks: tuple[str, ...] | None = None, train: bool = False) -> FolderDataset:
    source = DATASETS.get(name)()
    dataset = source.build(split, root, img_size, tasks or source.info.tasks, train)
    assert isinstance(dataset, FolderDataset)
    return dataset


def assert_target_equal(task: str, loaded: np.ndarray, truth: np.ndarray) -> None:
    assert loaded.shape == truth.shape, task
    if task == "normals":
        np.testing.assert_allclose(loaded, truth, rtol=0, atol=1e-6, err_msg=task)
    else:
        np.testing.assert_array_equal(loaded, truth, err_msg=task)


def test_loaders_register_under_the_known_infos() -> None:
    assert DATASETS.get("pascal-context").info is PASCAL_CONTEXT
    assert DATASETS.get("nyud").info is NYUD
    assert dataset_info("pascal-context") is PASCAL_CONTEXT
    assert set(PASCAL_CONTEXT.tasks) == {"semseg", "human_parts", "saliency", "normals", "edge"}


@pytest.mark.parametrize("name", DATASET_NAMES)
def test_every_task_of_every_sample_loads_as_encoded(fixtures: dict[str, Fixture],
                                                     name: str) -> None:
    fixture = fixtures[name]
    for split, ids in fixture.splits.items():
        dataset = build(name, fixture.root, split)
        assert dataset.ids == ids
        for index, image_id in enumerate(ids):
            image, targets = dataset.raw(index)
            truth = fixture.targets[image_id]
            assert set(targets) == set(truth) == set(DATASETS.get(name).info.tasks)
            for task, loaded in targets.items():
                assert_target_equal(task, loaded, truth[task])
            # JPEG is lossy: the decoded image is close to what was encoded, not equal
            error = np.abs(image.astype(int) - fixture.images[image_id].astype(int))
            assert image.shape == fixture.images[image_id].shape
            assert error.mean() < 2 and error.max() < 40, image_id


def test_fixtures_cover_every_label_case(fixtures: dict[str, Fixture]) -> None:
    """Guards the value-by-value test above against a fixture that skips a case."""
    pascal = fixtures["pascal-context"]
    for ids in pascal.splits.values():
        parts = [pascal.targets[i]["human_parts"] for i in ids]
        assert any((p == 255).all() for p in parts)  # no person with parts: all ignore
        assert any(set(np.unique(p)) == set(range(7)) for p in parts)  # background + 6 parts
    normals = np.concatenate([t["normals"].reshape(-1, 3) for t in pascal.targets.values()])
    assert 0 < (np.abs(normals).sum(1) == 0).mean() < 1  # kept and zeroed pixels
    assert any((pascal.root / "semseg" / "VOC12" / f"{i}.png").is_file() for i in pascal.targets)
    assert any((pascal.root / "semseg" / "pascal-context" / f"{i}.png").is_file()
               for i in pascal.targets)
    nyud = fixtures["nyud"]
    semseg = np.concatenate([t["semseg"].ravel() for t in nyud.targets.values()])
    assert {0, 39, 255} <= set(semseg.tolist()) <= {*range(40), 255}
    assert all((t["depth"] == 0).any() for t in nyud.targets.values())


def test_human_parts_files_have_the_pascal_part_struct_layout(
        fixtures: dict[str, Fixture]) -> None:
    """The positional access of the community loader works on the fixture's .mat files:
    anno → objects (field 1) → class_ind (1), mask (2), parts (3) → part_name (0), mask (1)."""
    root = fixtures["pascal-context"].root
    anno = scipy.io.loadmat(str(root / "human_parts" / "2008_000000.mat"))["anno"]
    assert anno.dtype.names == ("imname", "objects")
    objects = anno[0][0][1][0]
    person, dog = objects[0], objects[1]
    assert objects.dtype.names == ("class", "class_ind", "mask", "parts")
    assert person[1][0][0] == 15 and str(person[0][0]) == "person"
    assert person[2].shape == (64, 80)
    assert str(person[3][0][0][0][0]) == "hair" and person[3][0][0][1].shape == (64, 80)
    assert dog[1][0][0] == 12
    without_parts = scipy.io.loadmat(str(root / "human_parts" / "2008_000002.mat"))["anno"]
    assert len(without_parts[0][0][1][0][0][3]) == 0


def test_square_validation_images_are_not_resampled(fixtures: dict[str, Fixture]) -> None:
    """At its own size a validation sample is its files: normalised image, exact targets."""
    fixture = fixtures["pascal-context"]
    dataset = build("pascal-context", fixture.root, "val", img_size=64)
    index = dataset.ids.index("2008_000006")  # 64×64
    sample = dataset[index]
    truth = fixture.targets["2008_000006"]
    for task in ("semseg", "human_parts", "saliency", "edge"):
        assert sample[task].dtype == torch.int64
        assert torch.equal(sample[task], torch.from_numpy(truth[task].astype(np.int64))), task
    assert torch.allclose(sample["normals"], torch.from_numpy(truth["normals"]).permute(2, 0, 1),
                          atol=1e-6)
    mean = torch.tensor(IMAGENET_MEAN)[:, None, None]
    std = torch.tensor(IMAGENET_STD)[:, None, None]
    pixels = (sample["image"] * std + mean) * 255
    encoded = torch.from_numpy(fixture.images["2008_000006"]).permute(2, 0, 1).float()
    assert (pixels - encoded).abs().mean() < 2


def test_validation_resize_takes_the_nearest_source_pixel(fixtures: dict[str, Fixture]) -> None:
    fixture = fixtures["nyud"]
    dataset = build("nyud", fixture.root, "val", img_size=64, tasks=("semseg", "depth"))
    index = dataset.ids.index("000007")  # 40×56
    sample = dataset[index]
    truth = fixture.targets["000007"]
    rows = ((np.arange(64) + 0.5) * 40 / 64).astype(int)
    cols = ((np.arange(64) + 0.5) * 56 / 64).astype(int)
    expected = truth["semseg"][np.ix_(rows, cols)]
    assert torch.equal(sample["semseg"], torch.from_numpy(expected.astype(np.int64)))
    assert torch.equal(sample["depth"][0], torch.from_numpy(truth["depth"][np.ix_(rows, cols)]))
    assert sample["depth"].shape == (1, 64, 64)


def test_semseg_prefers_the_voc12_file(tmp_path: Path) -> None:
    from PIL import Image

    fixture = write_fixture("pascal-context", tmp_path / "pc")
    image_id = "2008_000001"  # the fixture wrote it under semseg/pascal-context only
    assert not (fixture.root / "semseg" / "VOC12" / f"{image_id}.png").exists()
    size = fixture.targets[image_id]["semseg"].shape
    Image.fromarray(np.full(size, 7, dtype=np.uint8)).save(
        fixture.root / "semseg" / "VOC12" / f"{image_id}.png")
    dataset = build("pascal-context", fixture.root, "train", tasks=("semseg",))
    _, targets = dataset.raw(dataset.ids.index(image_id))
    assert (targets["semseg"] == 7).all()


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


def test_person_index_is_cached_in_the_user_cache_keyed_by_content(
        tmp_path: Path, isolated_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fixture = write_fixture("pascal-context", tmp_path / "pc")
    before = _snapshot(fixture.root)
    build("pascal-context", fixture.root, "train", tasks=("human_parts",))
    assert _snapshot(fixture.root) == before  # nothing written into the dataset
    (entry,) = (isolated_cache / "pebench" / "datasets" / "pascal-context").glob("*.json")

    import pebench.data.person_parts as person_parts

    def no_scan(path: Path) -> bool:
        raise AssertionError(f"scanned {path} although the index is cached")

    monkeypatch.setattr(person_parts, "has_person_parts", no_scan)
    dataset = build("pascal-context", fixture.root, "train", tasks=("human_parts",))
    for index, image_id in enumerate(dataset.ids):
        _, targets = dataset.raw(index)
        np.testing.assert_array_equal(targets["human_parts"],
                                      fixture.targets[image_id]["human_parts"])

    changed = fixture.root / "human_parts" / f"{dataset.ids[0]}.mat"
    os.utime(changed, ns=(changed.stat().st_atime_ns, changed.stat().st_mtime_ns + 10**9))
    with pytest.raises(AssertionError, match="scanned"):  # changed file: a new key, a rescan
        build("pascal-context", fixture.root, "train", tasks=("human_parts",))
    assert entry.is_file()


def test_augmented_training_samples_follow_their_draw_seed(
        fixtures: dict[str, Fixture]) -> None:
    dataset = build("pascal-context", fixtures["pascal-context"].root, "train", train=True)
    torch.manual_seed(3)
    first = dataset[Draw(0, 11)]
    torch.manual_seed(4)  # the global generator plays no part
    again = dataset[Draw(0, 11)]
    other = dataset[Draw(0, 12)]
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not torch.equal(first["image"], other["image"])
    for task in ("semseg", "saliency", "edge", "human_parts"):
        values = set(first[task].unique().tolist())
        allowed = {0, 1, 255} if task in ("saliency", "edge") else {*range(21), 255}
        assert values <= allowed, task
    with pytest.raises(ValueError, match="Draw"):
        dataset[0]


def test_augmented_batches_do_not_depend_on_the_number_of_workers(
        fixtures: dict[str, Fixture]) -> None:
    dataset = build("pascal-context", fixtures["pascal-context"].root, "train", train=True)

    def batches(workers: int) -> list[dict[str, torch.Tensor]]:
        stream = BatchIndexStream(len(dataset), 2, seed=5, start_batch=1)
        loader = DataLoader(dataset, batch_sampler=stream, num_workers=workers)
        iterator = iter(loader)
        return [next(iterator) for _ in range(3)]

    alone, with_workers = batches(0), batches(2)
    for one, other in zip(alone, with_workers, strict=True):
        assert all(torch.equal(one[k], other[k]) for k in one)
    assert not torch.equal(alone[0]["image"], alone[1]["image"])


def test_worker_errors_stay_one_line(tmp_path: Path) -> None:
    fixture = write_fixture("nyud", tmp_path / "ny")
    broken = fixture.root / "images" / f"{fixture.splits['train'][0]}.jpg"
    broken.write_bytes(b"\xff\xd8\xff not really a jpeg")
    dataset = build("nyud", fixture.root, "train")
    loader = DataLoader(dataset, batch_size=2, num_workers=1)
    with pytest.raises(DataFileError) as raised:
        next(iter(loader))
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(f"image '{broken}' is unreadable")
