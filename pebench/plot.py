"""The paper's figure: accuracy (Δm, or one task's primary metric) against trainable parameters.

Parameter-efficient methods are judged by the trade-off, so the figure puts trainable
parameters on a log axis, marks every method with its name and draws the Pareto front (the
best value reachable with at most that many parameters). Labels are placed greedily where
they overlap neither another label nor a marker, because a figure whose names collide is
not usable in a paper.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pebench.compare import Comparison, Row, describe_setting
from pebench.errors import PebenchError

SUFFIXES = (".png", ".svg", ".pdf")
# Label positions tried in turn, as (dx, dy) in points from the marker, nearest first.
OFFSETS = [(6, 5), (6, -11), (-6, 5), (-6, -11), (0, 9), (0, -15), (9, -3), (-9, -3),
           (14, 12), (14, -18), (-14, 12), (-14, -18), (0, 20), (0, -26), (24, -3), (-24, -3)]
PUBLISHED_COLOR = "0.55"

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.transforms import Bbox


@dataclass(frozen=True)
class Point:
    label: str
    params_m: float
    value: float
    std: float | None
    series: str  # legend entry the point belongs to


@dataclass(frozen=True)
class FigureData:
    """What the figure shows, decided before anything is drawn so bad input fails early."""

    ours: list[Point]
    published: list[Point]
    y_label: str
    higher_is_better: bool
    left_out: list[str]  # rows of ours that could not be placed, and why


def figure_data(comparison: Comparison, metric_task: str | None = None) -> FigureData:
    """Points for Δm (default) or ``metric_task``'s primary metric. Raises PebenchError when
    none of our rows has the value, saying what to do instead."""
    if metric_task is None:
        y_label, higher = "Δm (%)  ↑", True
    else:
        if metric_task not in comparison.tasks:
            raise PebenchError(f"--plot-metric '{metric_task}' is not a task of these runs; "
                               f"valid: {', '.join(comparison.tasks)}.")
        spec = comparison.primary_metrics[metric_task]
        higher = spec.higher_is_better
        y_label = f"{metric_task} {spec.name}  {spec.arrow}"
    ours, left_out = [], []
    for row in comparison.ours:
        point, why = _point(row, metric_task, comparison)
        if point is None:
            left_out.append(f"{row.method} ({describe_setting(row.setting)}): {why}")
        else:
            ours.append(point)
    if len({p.series for p in ours}) == 1:  # one setting: no need to name it in the legend
        ours = [dataclasses.replace(p, series="pebench runs") for p in ours]
    if not ours:
        if metric_task is None:
            raise PebenchError("Δm is unavailable for every run (no Δm-reference run of "
                               "the same setting, see the notes); plot a task's primary metric "
                               "with --plot-metric TASK instead.")
        raise PebenchError(f"no run has a {metric_task} value or a parameter count to plot.")
    published = [p for row in comparison.rows if row.source == "published"
                 for p in [_point(row, metric_task, comparison)[0]] if p is not None]
    return FigureData(ours, published, y_label, higher, left_out)


def save_figure(data: FigureData, path: Path) -> None:
    """Draw ``data`` and write it to ``path`` (.png, .svg or .pdf)."""
    check_path(path)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7.0, 4.6), layout="constrained")
    canvas = FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.set_xscale("log")
    series = list(dict.fromkeys(p.series for p in data.ours))
    for index, name in enumerate(series):
        points = [p for p in data.ours if p.series == name]
        color = f"C{index}"
        axes.errorbar([p.params_m for p in points], [p.value for p in points],
                      yerr=[p.std or 0.0 for p in points], fmt="o", color=color, ms=6,
                      capsize=2, zorder=3, label=f"{name} (mean ± std over seeds)")
        front_label = "Pareto front" if len(series) == 1 else \
            "Pareto front (per setting)" if index == 0 else None
        _front(axes, points, data.higher_is_better, color, "-", front_label)
    if data.published:
        axes.scatter([p.params_m for p in data.published], [p.value for p in data.published],
                     facecolors="none", edgecolors=PUBLISHED_COLOR, s=36, zorder=2,
                     label="published (PASCAL-Context, Swin-T)")
        _front(axes, data.published, data.higher_is_better, PUBLISHED_COLOR, "--",
               "published Pareto front")
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    axes.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axes.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axes.xaxis.set_minor_formatter(NullFormatter())
    axes.set_xlabel("trainable parameters (M, log scale)")
    axes.set_ylabel(data.y_label)
    axes.grid(True, which="major", alpha=0.3)
    axes.margins(x=0.12, y=0.12)
    handles, labels = axes.get_legend_handles_labels()
    order = sorted(range(len(labels)), key=lambda i: labels[i].startswith("published"))
    axes.legend([handles[i] for i in order], [labels[i] for i in order], loc="best",
                fontsize=8, frameon=False)
    canvas.draw()  # fixes the limits and the legend so labels can avoid them
    axes.set_xlim(axes.get_xlim())
    axes.set_ylim(axes.get_ylim())
    colors = {name: "black" if len(series) == 1 else f"C{i}" for i, name in enumerate(series)}
    colors["published"] = PUBLISHED_COLOR
    _place_labels(figure, axes, canvas, [*data.ours, *data.published], len(data.ours), colors)
    figure.savefig(path, dpi=160)


def check_path(path: Path) -> None:
    if path.suffix.lower() not in SUFFIXES:
        raise PebenchError(f"--plot '{path}': give a file ending in {', '.join(SUFFIXES)}.")
    if not path.parent.is_dir():
        raise PebenchError(f"--plot '{path}': the directory '{path.parent}' does not exist.")


def _point(row: Row, metric_task: str | None,
           comparison: Comparison) -> tuple[Point | None, str]:
    stat = row.delta_m if metric_task is None else row.metrics.get(metric_task)
    if stat is None:
        return None, "no Δm" if metric_task is None else f"no {metric_task} value"
    if row.params_m is None or row.params_m <= 0:
        return None, "no trainable-parameter count"
    series = "published" if row.source == "published" else _setting_key(row, comparison)
    return Point(row.method, row.params_m, stat.mean, stat.std, series), ""


def _setting_key(row: Row, comparison: Comparison) -> str:
    shown = {k: row.setting[k] for k in comparison.shown_columns}
    return describe_setting(shown) or "pebench runs"


def _front(axes: Axes, points: Sequence[Point], higher: bool, color: str, style: str,
           label: str | None) -> None:
    """Step line through the points no cheaper point beats: best value for ≤ x parameters."""
    front: list[Point] = []
    for point in sorted(points, key=lambda p: (p.params_m, -p.value if higher else p.value)):
        if not front or (point.value > front[-1].value if higher
                         else point.value < front[-1].value):
            front.append(point)
    xs = [p.params_m for p in front]
    ys = [p.value for p in front]
    right = max(p.params_m for p in points) * 1.6
    axes.step([*xs, right], [*ys, ys[-1]], where="post", color=color, linestyle=style,
              linewidth=1.2, alpha=0.8, zorder=1, label=label)


def _place_labels(figure: Figure, axes: Axes, canvas: FigureCanvasAgg, points: Sequence[Point],
                  n_ours: int, colors: dict[str, str]) -> None:
    """Put each name at the first offset whose box overlaps no placed label, no marker, no
    legend and stays inside the axes; our points first, so they get the best places."""
    from matplotlib.transforms import Bbox

    renderer = canvas.get_renderer()
    inside = axes.get_window_extent(renderer)
    to_display = axes.transData.transform
    scale = figure.dpi / 72.0
    taken: list[Bbox] = []
    legend = axes.get_legend()
    if legend is not None:
        taken.append(legend.get_window_extent(renderer))
    for point in points:
        x, y = to_display((point.params_m, point.value))
        taken.append(Bbox.from_extents(x - 4 * scale, y - 4 * scale, x + 4 * scale,
                                       y + 4 * scale))
    for index, point in enumerate(points):
        ours = index < n_ours
        best, best_cost = None, float("inf")
        for dx, dy in OFFSETS:
            text = axes.annotate(
                point.label, (point.params_m, point.value), xytext=(dx, dy),
                textcoords="offset points", fontsize=8 if ours else 6.5,
                color=colors[point.series], zorder=4,
                bbox={"boxstyle": "square,pad=0.1", "facecolor": "white", "edgecolor": "none",
                      "alpha": 0.75},
                ha="left" if dx > 0 else "right" if dx < 0 else "center", va="bottom")
            box = text.get_window_extent(renderer)
            cost = sum(_overlap(box, other) for other in taken) + _outside(box, inside)
            if cost < best_cost:
                if best is not None:
                    best[0].remove()
                best, best_cost = (text, box), cost
            else:
                text.remove()
            if cost == 0:
                break
        assert best is not None
        taken.append(best[1])


def _overlap(a: Bbox, b: Bbox) -> float:
    width = min(a.x1, b.x1) - max(a.x0, b.x0)
    height = min(a.y1, b.y1) - max(a.y0, b.y0)
    return max(width, 0.0) * max(height, 0.0)


def _outside(box: Bbox, inside: Bbox) -> float:
    """Area of ``box`` outside the axes, weighted so leaving the axes is worse than touching."""
    clipped = max(min(box.x1, inside.x1) - max(box.x0, inside.x0), 0.0) * \
        max(min(box.y1, inside.y1) - max(box.y0, inside.y0), 0.0)
    return 10.0 * (box.width * box.height - clipped)
