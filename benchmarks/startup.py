"""Start-up time of the commands that train nothing: ``pebench --help``, ``pebench list`` and
``pebench compare`` on a folder of 100 run records, each the median wall time of a few fresh
processes, against the 1.5 s target (issue 12), and once the first ``pebench list`` of an
install, which builds the catalog (``pebench/catalog.py``).

    python benchmarks/startup.py [--repeats N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pebench.results import RunRecord

TARGET_S = 1.5
METHODS = ("single-task", "mtl-full", "lora", "decoder-only")
PRIMARY_METRIC = {"semseg": {"name": "mIoU", "higher_is_better": True},
                  "normals": {"name": "mean", "higher_is_better": False}}


def write_records(folder: Path, count: int = 100) -> None:
    """``count`` completed records of four methods and 25 seeds, as runs write them."""
    for index in range(count):
        method = METHODS[index % len(METHODS)]
        RunRecord(
            run_id=f"{method}-s{index}", created_at="2026-01-01T00:00:00+00:00", method=method,
            method_config={}, tasks=["semseg", "normals"], dataset="synthetic",
            backbone="swin-nano", img_size=96, seed=index // len(METHODS), steps=300,
            config={"batch_size": 8, "lr": 1e-3}, status="completed",
            weights={"source": "embedded", "sha256": "ab" * 32},
            primary={"semseg": 30.0 + index % 7, "normals": 20.0 + index % 3},
            primary_metric=PRIMARY_METRIC, delta_m_reference_run=method == "single-task",
            params={"trainable": 10_000 * (1 + index % len(METHODS)), "total": 2_500_000},
            timing={"train_s": 30.0}).write(folder)


def median_wall_s(argv: list[str], repeats: int, env: dict[str, str]) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, env=env)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    pebench = shutil.which("pebench") or sys.exit("pebench is not on PATH: install it first")
    with tempfile.TemporaryDirectory() as tmp:
        records = Path(tmp) / "records"
        write_records(records)
        # An empty cache: the first listing imports the registries and writes the catalog.
        env = {**os.environ, "XDG_CACHE_HOME": str(Path(tmp) / "cache")}
        first_list = median_wall_s([pebench, "list"], 1, env)
        print(f"{'pebench list (first: builds the catalog)':42s} {first_list:6.2f} s   "
              "(once per install or edit)")
        commands = {"pebench --help": [pebench, "--help"], "pebench list": [pebench, "list"],
                    "pebench compare (100 records)": [pebench, "compare", "--results",
                                                      str(records)]}
        for label, argv in commands.items():
            seconds = median_wall_s(argv, args.repeats, env)
            verdict = "held" if seconds <= TARGET_S else "MISSED"
            print(f"{label:42s} {seconds:6.2f} s   ≤ {TARGET_S} s: {verdict}")


if __name__ == "__main__":
    main()
