"""The rich progress bar of a training run: step, losses, speed and ETA."""

from __future__ import annotations

from types import TracebackType

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class TrainingProgress:
    def __init__(self, label: str, total_steps: int, enabled: bool = True,
                 start_step: int = 0) -> None:
        self._progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[losses]}"), TimeElapsedColumn(), TextColumn("ETA"),
            TimeRemainingColumn(), disable=not enabled,
        )
        self._bar = self._progress.add_task(label, total=total_steps, losses="",
                                            completed=start_step)

    def __enter__(self) -> TrainingProgress:
        self._progress.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._progress.stop()

    def update(self, step: int, losses: dict[str, float]) -> None:
        shown = " ".join(f"{name} {value:.3f}" for name, value in losses.items())
        self._progress.update(self._bar, completed=step, losses=f"loss {shown}")
