"""Time one training step of task-specific methods in the per-task loop and in the
task-batched pass (the default), on the embedded setting.

    python benchmarks/task_execution.py [--methods polyhistor-lite,polyhistor] [--repeats 10]

Prints the median step time of each execution; the task-batched pass should be the faster.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from pebench.backbones import BACKBONES, SwinEncoder
from pebench.config import method_config
from pebench.method import METHODS
from pebench.model import MultiTaskModel

OUTPUTS = {"semseg": 7, "human_parts": 7, "saliency": 1, "normals": 3}


def step_seconds(method: str, execution: str, img_size: int, batch: int, repeats: int) -> float:
    torch.manual_seed(0)
    encoder = SwinEncoder(BACKBONES.get("swin-nano"), img_size)
    config = method_config(method, {"execution": execution})
    model = MultiTaskModel(encoder, METHODS.get(method)(config, tuple(OUTPUTS)), OUTPUTS)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    images = torch.randn(batch, 3, img_size, img_size)
    times = []
    for _ in range(repeats + 2):
        start = time.perf_counter()
        model.prepare()
        loss = sum(o.square().mean() for o in model(images).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return statistics.median(times[2:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default="polyhistor-lite,polyhistor,hyperformer")
    parser.add_argument("--img-size", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    print(f"swin-nano, {args.img_size} px, batch {args.batch_size}, 4 tasks, "
          f"{torch.get_num_threads()} threads; median of {args.repeats} steps")
    print(f"{'method':<18}{'loop ms':>10}{'batched ms':>12}{'speed-up':>10}")
    for method in args.methods.split(","):
        loop, batched = (step_seconds(method, e, args.img_size, args.batch_size, args.repeats)
                         for e in ("loop", "batched"))
        print(f"{method:<18}{loop * 1e3:>10.1f}{batched * 1e3:>12.1f}{loop / batched:>9.2f}×")


if __name__ == "__main__":
    main()
