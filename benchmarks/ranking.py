"""Does a results folder's budget rank the methods? (pebench.ranking's checks, printed.)

    python benchmarks/ranking.py RESULTS_DIR [--sigmas 2] [--spare-tasks 1]
                                             [--min-relative 0.05]

RESULTS_DIR holds one trained setting of every method over the same seeds (as
``benchmarks/all_methods.sh`` writes it) and untrained runs of the same setting
(``--steps 0``). The untrained and the best constant prediction's scores
(``pebench.constant_baseline``) are the floors every task must clear. Exits 1 when a check
fails, 2 on bad input.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pebench.bench import baseline
from pebench.compare import Row, compare
from pebench.constant_baseline import constant_primaries
from pebench.errors import PebenchError
from pebench.method import METHODS
from pebench.ranking import delta_m_figures, floors, rank


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path)
    parser.add_argument("--sigmas", type=float, default=2.0)
    parser.add_argument("--spare-tasks", type=int, default=1)
    parser.add_argument("--min-relative", type=float, default=0.05)
    parser.add_argument("--data-root", type=Path, default=None,
                        help="the dataset's folder, for a dataset on disk")
    args = parser.parse_args()
    try:
        comparison = compare(args.results)
        trained, untrained = _split(comparison.ours)
    except PebenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    setting = trained[0].setting
    metrics = comparison.primary_metrics
    constant = constant_primaries(setting["dataset"], setting["tasks"].split(","),
                                  int(setting["img_size"]), args.data_root)
    floor = floors([*(_means(row) for row in untrained), constant], metrics)
    reference = [e.name for e in METHODS.entries() if e.obj.delta_m_reference]
    report = rank(trained, floor, metrics, baseline("frozen-backbone"),
                  [baseline("full-fine-tuning"), *reference], args.sigmas, args.spare_tasks,
                  args.min_relative)
    print(f"setting: {', '.join(f'{k} {v}' for k, v in setting.items())}")
    print("floors (better of untrained and best constant): "
          + ", ".join(f"{t} {v:.2f} (constant {constant[t]:.2f})"
                      for t, v in floor.items()))
    for row in sorted(trained, key=lambda r: -(r.delta_m.mean if r.delta_m else -1e9)):
        cells = [f"{t} {s.mean:.2f}±{s.std or 0:.2f}" for t, s in row.metrics.items() if s]
        dm = f"Δm {row.delta_m.mean:+.2f}±{row.delta_m.std or 0:.2f}" if row.delta_m else "Δm —"
        print(f"  {row.method:<18} n={row.n} {dm:<16} " + "  ".join(cells))
    print(delta_m_figures(report))
    for line in report.failures:
        print(f"FAILED {line}")
    print("all checks held" if report.held else f"{len(report.failures)} check(s) failed")
    return 0 if report.held else 1


def _means(row: Row) -> dict[str, float]:
    return {task: stat.mean for task, stat in row.metrics.items() if stat is not None}


def _split(rows: list[Row]) -> tuple[list[Row], list[Row]]:
    """The trained rows of the one trained setting, and the untrained rows of the same."""
    untrained = [r for r in rows if int(r.setting.get("steps", 1)) == 0]
    trained = [r for r in rows if r not in untrained]
    settings = {tuple(sorted((k, str(v)) for k, v in r.setting.items())) for r in trained}
    if len(settings) != 1:
        raise PebenchError(f"expected the runs of one trained setting, found {len(settings)}; "
                           "give a folder of one budget (benchmarks/all_methods.sh writes one)")
    same = [r for r in untrained if _without_budget(r) == _without_budget(trained[0])]
    if not same:
        raise PebenchError("no untrained runs (--steps 0) of the same setting; run e.g. "
                           "'pebench sweep --methods M --steps 0 --seeds 0,1,2 --out DIR'")
    return trained, same


def _without_budget(row: Row) -> dict[str, str]:
    return {k: str(v) for k, v in row.setting.items() if k not in ("steps", "epochs")}


if __name__ == "__main__":
    sys.exit(main())
