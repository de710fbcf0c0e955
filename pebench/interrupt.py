"""Stopping a run cleanly: a signal (Ctrl-C, SLURM's SIGTERM, submitit's timeout hook) only
asks the run to stop; the run saves its state at the next step boundary and ends as
``interrupted``. A second signal stops at once."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequest:
    """Set from a signal handler or another thread; read by the training loop."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason = ""

    def request(self, reason: str) -> None:
        self.reason = reason
        self._event.set()

    @property
    def requested(self) -> bool:
        return self._event.is_set()


class StopRequested(Exception):
    """Raised inside a run at a point where its state can be saved."""


class RunInterrupted(Exception):
    """A run stopped on request after saving its state; ``record`` (a RunRecord) says how to
    resume it, and ``reason`` names the signal."""

    def __init__(self, record: Any, reason: str) -> None:
        super().__init__(f"{record.error}; the state is saved. Resume with: "
                         f"{record.resume_command}")
        self.record = record
        self.reason = reason


def signal_exit_code(reason: str) -> int:
    """The shell's convention for a process ended by a signal: 128 + its number."""
    try:
        return 128 + int(signal.Signals[reason])
    except KeyError:
        return 1


@contextmanager
def stop_on_signals(stop: StopRequest) -> Iterator[StopRequest]:
    """While inside, SIGINT and SIGTERM request a clean stop; a second one raises
    KeyboardInterrupt. The handlers are installed explicitly, so a run started in the
    background (where the shell ignores SIGINT) still stops on it. Outside the main thread,
    where Python cannot install handlers, nothing is installed."""
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        if stop.requested:
            raise KeyboardInterrupt
        stop.request(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
