"""``pebench data check``: validate a dataset download before spending GPU hours on it.

Every image and label file of both splits is read through the same layout code the runs
use (so the check accepts exactly what a run can load), and the problems are sorted by kind:
missing files, unreadable files, labels whose size differs from their image, and files
whose content is outside the format (class ids outside the label space, wrong array
shapes, ...). Per split and task the report gives how many samples were checked and passed
and the range of label values seen, so a wrong folder or a half-finished extraction shows
at a glance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from pebench.data.augment import TargetKind
from pebench.data.base import DATASETS
from pebench.data.files import DataFileError, ProblemKind
from pebench.data.folder import SPLITS, FolderLayout, FolderSource
from pebench.errors import PebenchError
from pebench.task import IGNORE_INDEX

PROBLEM_TITLES: dict[ProblemKind, str] = {
    "missing": "missing files", "unreadable": "unreadable files",
    "size": "labels of the wrong size", "content": "files with content outside the format"}
SHOWN_PER_KIND = 5


@dataclass
class ValueRange:
    """The label values seen for one task: class ids, or the range of valid values."""

    kind: TargetKind
    ids: set[int] = field(default_factory=set)
    low: float = math.inf
    high: float = -math.inf
    all_ignored: int = 0  # targets without a single valid pixel

    def add(self, target: np.ndarray) -> None:
        if self.kind == "class":
            values = set(np.unique(target).tolist())
            self.ids |= values
            self.all_ignored += int(values <= {IGNORE_INDEX})
            return
        valid = (np.linalg.norm(target, axis=-1) if self.kind == "direction" else target)
        valid = valid[valid > 0]
        if valid.size == 0:
            self.all_ignored += 1
            return
        self.low = min(self.low, float(valid.min()))
        self.high = max(self.high, float(valid.max()))

    def describe(self) -> str:
        ignored = f"; {self.all_ignored} all ignore" if self.all_ignored else ""
        if self.kind == "class":
            return (_runs(sorted(self.ids)) or "none") + ignored
        if self.low > self.high:
            return "no valid pixel" + ignored
        what = "|n|" if self.kind == "direction" else "value"
        return f"{what} {self.low:.3g}–{self.high:.3g}{ignored}"


def _runs(values: list[int]) -> str:
    """[0, 1, 2, 5, 255] -> '0–2, 5, 255'."""
    parts: list[str] = []
    start = previous = None
    for value in [*values, None]:
        if value is not None and previous is not None and value == previous + 1:
            previous = value
            continue
        if start is not None:
            parts.append(f"{start}" if start == previous else f"{start}–{previous}")
        start = previous = value
    return ", ".join(parts)


@dataclass
class Tally:
    checked: int = 0
    passed: int = 0
    values: ValueRange | None = None  # of a label
    heights: tuple[int, int] | None = None  # of the images: (smallest, largest)
    widths: tuple[int, int] | None = None

    def add_image_size(self, height: int, width: int) -> None:
        self.heights = _widen(self.heights, height)
        self.widths = _widen(self.widths, width)

    def describe(self) -> str:
        if self.values is not None:
            return self.values.describe()
        if self.heights is None or self.widths is None:
            return ""
        return (f"heights {self.heights[0]}–{self.heights[1]}, "
                f"widths {self.widths[0]}–{self.widths[1]}")


def _widen(bounds: tuple[int, int] | None, value: int) -> tuple[int, int]:
    return (value, value) if bounds is None else (min(bounds[0], value), max(bounds[1], value))


@dataclass
class CheckReport:
    dataset: str
    root: Path
    tasks: tuple[str, ...]
    tallies: dict[tuple[str, str], Tally] = field(default_factory=dict)
    problems: dict[ProblemKind, list[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def tally(self, split: str, what: str, kind: TargetKind | None = None) -> Tally:
        key = (split, what)
        if key not in self.tallies:
            self.tallies[key] = Tally(values=ValueRange(kind) if kind is not None else None)
        return self.tallies[key]

    def add_problem(self, error: DataFileError) -> None:
        """Record a problem once, even when several tasks read the same broken file."""
        messages = self.problems.setdefault(error.kind, [])
        if str(error) not in messages:
            messages.append(str(error))


def check_dataset(dataset: str, root: Path, tasks: tuple[str, ...] | None = None,
                  show_progress: bool = True) -> CheckReport:
    """Read every file of both splits of ``dataset`` under ``root``; never raises for a bad
    file (it becomes a problem of the report), only for a bad request."""
    source = DATASETS.get(dataset)()
    if not isinstance(source, FolderSource):
        raise PebenchError(f"dataset '{dataset}' is generated by pebench, not read from disk; "
                           "there is nothing to check.")
    if not root.is_dir():
        raise PebenchError(f"--data-root '{root}' is not a directory.")
    layout = source.layout(root)
    chosen = tasks or tuple(layout.kinds)
    unknown = [t for t in chosen if t not in layout.kinds]
    if unknown:
        raise PebenchError(f"dataset '{dataset}' has no labels for {', '.join(unknown)}; it "
                           f"offers {', '.join(layout.kinds)}.")
    report = CheckReport(dataset, root, chosen)
    splits = {split: _split_ids(layout, split, report) for split in SPLITS}
    progress = Progress(TextColumn("[bold]checking {task.description}"), BarColumn(),
                        MofNCompleteColumn(), TimeRemainingColumn(),
                        console=Console(stderr=True), disable=not show_progress, transient=True)
    with progress:
        bar = progress.add_task(dataset, total=sum(len(ids) for ids in splits.values()))
        for split, ids in splits.items():
            for image_id in ids:
                _check_sample(layout, split, image_id, chosen, report)
                progress.advance(bar)
    return report


def _split_ids(layout: FolderLayout, split: str, report: CheckReport) -> list[str]:
    try:
        ids = layout.split_ids(split)
    except DataFileError as error:
        report.add_problem(error)
        return []
    expected = layout.expected_sizes[split]
    if len(ids) != expected:
        report.notes.append(f"the {split} split lists {len(ids):,} images; the official "
                            f"release has {expected:,} (a subset, or another release?).")
    return ids


def _check_sample(layout: FolderLayout, split: str, image_id: str, tasks: tuple[str, ...],
                  report: CheckReport) -> None:
    shape = None
    tally = report.tally(split, "image")
    tally.checked += 1
    try:
        image = layout.read_image(image_id)
        shape = (image.shape[0], image.shape[1])
        tally.passed += 1
        tally.add_image_size(*shape)
    except DataFileError as error:
        report.add_problem(error)
    for task in tasks:
        tally = report.tally(split, task, layout.kinds[task])
        tally.checked += 1
        try:
            target = layout.read_target(task, image_id, shape)
        except DataFileError as error:
            report.add_problem(error)
            continue
        tally.passed += 1
        assert tally.values is not None
        tally.values.add(target)


def summary_table(report: CheckReport) -> Table:
    table = Table(title=f"{report.dataset} at {report.root}")
    table.add_column("split")
    table.add_column("files of")
    table.add_column("checked", justify="right")
    table.add_column("passed", justify="right")
    table.add_column("values")
    for (split, what), tally in report.tallies.items():
        table.add_row(split, what, f"{tally.checked:,}", f"{tally.passed:,}", tally.describe())
    return table


def problem_lines(report: CheckReport) -> list[str]:
    """The problems by kind: the first few in full, then how many more."""
    lines = []
    for kind, title in PROBLEM_TITLES.items():
        messages = report.problems.get(kind, [])
        if not messages:
            continue
        lines.append(f"{title} ({len(messages)}):")
        lines += [f"  {message}" for message in messages[:SHOWN_PER_KIND]]
        if len(messages) > SHOWN_PER_KIND:
            lines.append(f"  and {len(messages) - SHOWN_PER_KIND} more")
    return lines
