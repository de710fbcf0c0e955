"""Embedded backbone weights: swin-nano pretrained on a synthetic pretext task.

Frozen-backbone methods are meaningless on random weights and no ImageNet checkpoint can be
fetched here, so swin-nano learns a classification pretext (the shape and colour in each cell
of a 2×2 grid, the background texture, the object count: ``pebench.data.pretext``) that
shares no label with the benchmark's dense tasks. The heads read all four taps (pooled to
the grid), and a linear pixel head reconstructs the image from masked inputs, so every stage
keeps local, colour-aware information (a purely global pretext gives features that transfer
worse than random ones).

The weights of the current recipe ship with pebench (``pebench/embedded_weights/``, in fp16:
half the bytes, and a frozen-backbone run on them matches one on the fp32 build to 0.06
points), so the first run trains at once and every machine uses byte-identical weights.
Training is deterministic only for a given configuration and machine, so a rebuild
(``pebench pretrain``) goes to the user's cache, under a name that hashes the configuration,
and is used only when given with ``--weights``; when the recipe changes and no file for it
ships, the rebuilt weights are what runs use.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn import functional as F

from pebench.atomic import atomic_write, atomic_write_text
from pebench.backbones import BACKBONES, SwinEncoder
from pebench.cache import cache_dir
from pebench.data.pretext import GRID, PRETEXT_HEADS, pretext_batch
from pebench.digest import file_sha256
from pebench.schedule import adamw, warmup_cosine

PRETEXT_VERSION = 2
MASK_BLOCK = 8
MASK_RATIO = 0.4
EVAL_IMAGES = 512


@dataclass(frozen=True)
class PretrainConfig:
    backbone: str = "swin-nano"
    img_size: int = 96
    steps: int = 1000
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_fraction: float = 0.05
    seed: int = 0

    def key(self) -> str:
        payload = json.dumps({"version": PRETEXT_VERSION, **dataclasses.asdict(self)},
                             sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:12]


SHIPPED_DIR = Path(__file__).resolve().parent / "embedded_weights"
"""Where the package carries the fp16 weights of the current recipe (package data)."""


def weights_file_name(config: PretrainConfig) -> str:
    return f"{config.backbone}-pretext-v{PRETEXT_VERSION}-{config.key()}.safetensors"


def embedded_weights_path(config: PretrainConfig) -> Path:
    """Where ``pretrain`` writes a build of ``config``: the user's cache."""
    return cache_dir() / "weights" / weights_file_name(config)


def shipped_weights_path(config: PretrainConfig) -> Path:
    """Where the package carries ``config``'s weights (present only for the current recipe)."""
    return SHIPPED_DIR / weights_file_name(config)


class PretextModel(nn.Module):
    """The encoder with linear classification heads on all four taps (pooled to the label
    grid) and a linear pixel head that reconstructs the unmasked image from every tap."""

    def __init__(self, encoder: SwinEncoder) -> None:
        super().__init__()
        self.encoder = encoder
        width = sum(encoder.tap_channels)
        self.norm = nn.GroupNorm(1, width)
        self.heads = nn.ModuleDict({name: nn.Conv2d(width, size, kernel_size=1)
                                    for name, (_, size) in PRETEXT_HEADS.items()})
        self.strides = encoder.spec.tap_strides
        self.pixel_heads = nn.ModuleList(
            nn.Conv2d(channels, 3 * stride * stride, kernel_size=1)
            for channels, stride in zip(encoder.tap_channels, self.strides, strict=True))

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        taps = self.encoder(images)
        pooled = self.norm(torch.cat([F.adaptive_avg_pool2d(tap, GRID) for tap in taps], 1))
        outputs = {}
        for name, (granularity, _) in PRETEXT_HEADS.items():
            logits = self.heads[name](pooled)
            outputs[name] = logits if granularity == "cell" else logits.mean(dim=(2, 3))
        outputs["pixels"] = sum(F.pixel_shuffle(head(tap), stride) for head, tap, stride
                                in zip(self.pixel_heads, taps, self.strides, strict=True))
        return outputs


def mask_blocks(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Blank out random MASK_BLOCK² blocks (to the dataset mean, 0 after normalisation)."""
    b, _, h, w = images.shape
    keep = torch.rand(b, 1, h // MASK_BLOCK, w // MASK_BLOCK, generator=generator) >= MASK_RATIO
    keep = keep.repeat_interleave(MASK_BLOCK, 2).repeat_interleave(MASK_BLOCK, 3)
    return images * keep


def pretext_loss(outputs: dict[str, torch.Tensor], labels: dict[str, torch.Tensor],
                 images: torch.Tensor) -> torch.Tensor:
    classification = torch.stack([F.cross_entropy(outputs[name], labels[name])
                                  for name in PRETEXT_HEADS]).sum()
    return classification + F.mse_loss(outputs["pixels"], images)


@torch.no_grad()
def pretext_accuracy(model: PretextModel, config: PretrainConfig) -> dict[str, float]:
    """Accuracy per head on held-out images (a generator seed the training never uses)."""
    model.eval()
    rng = np.random.default_rng([config.seed, 1])
    hits = dict.fromkeys(PRETEXT_HEADS, 0.0)
    counted = dict.fromkeys(PRETEXT_HEADS, 0)
    for _ in range(EVAL_IMAGES // config.batch_size):
        images, labels = pretext_batch(rng, config.batch_size, config.img_size)
        outputs = model(images)
        for name in PRETEXT_HEADS:
            correct = outputs[name].argmax(dim=1) == labels[name]
            hits[name] += correct.sum().item()
            counted[name] += correct.numel()
    model.train()
    return {name: 100.0 * hits[name] / counted[name] for name in PRETEXT_HEADS}


def pretrain(config: PretrainConfig, show_progress: bool = True) -> Path:
    """Train the pretext model, write the encoder weights (timm key format) and a metadata
    file beside them; returns the weights path."""
    spec = BACKBONES.get(config.backbone)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng([config.seed, 0])
    generator = torch.Generator().manual_seed(config.seed)
    model = PretextModel(SwinEncoder(spec, config.img_size))
    optimizer = adamw(model, config.lr, config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_cosine(config.steps, round(config.warmup_fraction * config.steps)))
    start = time.perf_counter()
    with Progress(TextColumn("[bold]pretraining {task.fields[name]} (pretext, once)"),
                  BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TextColumn("loss {task.fields[loss]:.3f}"), TimeElapsedColumn(),
                  TimeRemainingColumn(), disable=not show_progress, transient=False) as progress:
        bar = progress.add_task("pretrain", total=config.steps, name=config.backbone, loss=0.0)
        for _ in range(config.steps):
            images, labels = pretext_batch(rng, config.batch_size, config.img_size)
            loss = pretext_loss(model(mask_blocks(images, generator)), labels, images)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            optimizer.step()
            scheduler.step()
            progress.update(bar, advance=1, loss=loss.item())
    train_seconds = time.perf_counter() - start
    accuracy = pretext_accuracy(model, config)
    path = embedded_weights_path(config)
    state = {k: v.contiguous() for k, v in model.encoder.backbone_state_dict().items()}
    atomic_write(path, lambda tmp: save_file(state, str(tmp)))
    meta = {"config": dataclasses.asdict(config), "pretext_version": PRETEXT_VERSION,
            "train_seconds": round(train_seconds, 1), "heldout_accuracy": accuracy}
    atomic_write_text(path.with_suffix(".json"), json.dumps(meta, indent=2) + "\n")
    return path


def ship(built: Path, config: PretrainConfig) -> Path:
    """Write the build ``built`` of ``config`` as the shipped file: fp16, with its metadata
    (the build's, plus the dtype and the build's own sha256) beside it; returns its path."""
    state = {k: v.half().contiguous() for k, v in load_file(str(built)).items()}
    path = shipped_weights_path(config)
    atomic_write(path, lambda tmp: save_file(state, str(tmp)))
    meta = json.loads(built.with_suffix(".json").read_text())
    meta.update(dtype="float16", built_sha256=file_sha256(built))
    atomic_write_text(path.with_suffix(".json"), json.dumps(meta, indent=2) + "\n")
    return path


def ensure_embedded_weights(backbone: str, show_progress: bool = True) -> Path:
    """The embedded weights of ``backbone``: the shipped file of the current recipe; without
    one (a recipe changed and not yet shipped), the cached build, built first if missing."""
    config = PretrainConfig(backbone=backbone)
    shipped = shipped_weights_path(config)
    if shipped.is_file():
        return shipped
    path = embedded_weights_path(config)
    if path.is_file():
        return path
    return pretrain(config, show_progress=show_progress)
