"""The embedded ``synthetic`` dataset: procedural scenes with all five dense labels.

It exists so the whole harness (every method, task, meter and the CLI) can be run and tested
without downloading anything, on labels that are related to each other the way real ones
are (see :mod:`pebench.data.scenes` for the scene model). Sample ``i`` of a split is
generated on the fly from a generator seeded with ``(seed, split, i)``, so it is the same
sample every time, whatever order it is asked in and in whichever DataLoader worker.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from pebench.data.base import DatasetInfo, DatasetSource, Sample, register_dataset
from pebench.data.scenes import MIN_SIZE, NUM_PART_CLASSES, NUM_SEMSEG_CLASSES, generate_scene
from pebench.data.stream import Draw, unpack
from pebench.data.transforms import normalize_image
from pebench.errors import PebenchError

TRAIN_SIZE = 4096
VAL_SIZE = 256
SPLIT_SIZES: dict[str, int] = {"train": TRAIN_SIZE, "val": VAL_SIZE}
# Part of every sample's seed, so the train and val scenes never coincide.
SPLIT_IDS: dict[str, int] = {"train": 0, "val": 1}
DEFAULT_SEED = 0


class SyntheticScenes(Dataset[Sample]):
    """One split of procedural scenes, rendered deterministically on demand.

    No augmentation is applied, even for training: the generator can produce as many fresh
    scenes as wanted, and augmenting would only break the guarantee that index ``i`` always
    returns the same sample (which the tests and reproducible runs rely on).
    """

    def __init__(self, split: str, img_size: int, tasks: tuple[str, ...],
                 seed: int = DEFAULT_SEED) -> None:
        if split not in SPLIT_SIZES:
            raise PebenchError(f"unknown split '{split}' for the synthetic dataset. "
                               f"Valid: {', '.join(SPLIT_SIZES)}.")
        unknown = [t for t in tasks if t not in SyntheticSource.info.tasks]
        if unknown:
            raise PebenchError(f"the synthetic dataset has no task {', '.join(unknown)}. "
                               f"Valid: {', '.join(SyntheticSource.info.tasks)}.")
        if img_size < MIN_SIZE:
            raise PebenchError(f"the synthetic dataset needs an image size of at least "
                               f"{MIN_SIZE}, got {img_size}.")
        self.split = split
        self.img_size = img_size
        self.tasks = tuple(tasks)
        self.seed = seed

    def __len__(self) -> int:
        return SPLIT_SIZES[self.split]

    def __getitem__(self, item: int | Draw) -> Sample:
        index, _ = unpack(item)  # no augmentation: the draw's seed is not needed
        n = len(self)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError(f"index {index} out of range for a split of {n} samples")
        rng = np.random.default_rng([self.seed, SPLIT_IDS[self.split], index])
        scene = generate_scene(rng, self.img_size)
        sample: Sample = {"image": normalize_image(scene.image)}
        for task in self.tasks:
            if task == "normals":
                sample[task] = torch.from_numpy(scene.normals)
            elif task == "depth":
                sample[task] = torch.from_numpy(scene.depth)[None]
            else:
                label = getattr(scene, task)
                sample[task] = torch.from_numpy(label.astype(np.int64))
        return sample


@register_dataset
class SyntheticSource(DatasetSource):
    """Procedural top-down scenes with every task's label; built in, needs no download."""

    info = DatasetInfo(
        name="synthetic",
        tasks=("semseg", "human_parts", "saliency", "normals", "depth"),
        default_tasks=("semseg", "human_parts", "saliency", "normals"),
        num_classes={"semseg": NUM_SEMSEG_CLASSES, "human_parts": NUM_PART_CLASSES},
        default_img_size=96,
        needs_root=False,
    )
    description = "Procedural top-down scenes with every task's label; built in, no download."

    def build(self, split: str, root: Path | None, img_size: int, tasks: tuple[str, ...],
              train: bool, eval_resolution: str = "input") -> Dataset[Sample]:
        """The split; ``root`` is ignored and ``train`` changes nothing (no augmentation).
        Scenes are rendered at ``img_size``, so that is their labels' original size too and
        ``eval_resolution`` changes nothing."""
        del root, train, eval_resolution
        return SyntheticScenes(split, img_size, tasks)
