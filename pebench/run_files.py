"""The files one run keeps in its output folder, and the lock that makes it one writer's.

``<run-id>.json`` is the record, ``<run-id>.safetensors`` the final trainable weights,
``<run-id>.state.pt`` the resumable training state (removed once the run completes), and
``<run-id>.lock`` exists while a process owns the run. The lock is created exclusively, so
that run ids are unique among any number of concurrent writers, and it holds an advisory
``flock`` for the owner's lifetime: the kernel drops it when the owner dies (SIGKILL
included), so a lock file without a holder means the run is no longer running.
"""

from __future__ import annotations

import fcntl
import os
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pebench.errors import PebenchError

STATE_SUFFIX = ".state.pt"


@dataclass(frozen=True)
class RunFiles:
    out: Path
    run_id: str

    @property
    def record(self) -> Path:
        return self.out / f"{self.run_id}.json"

    @property
    def checkpoint(self) -> Path:
        return self.out / f"{self.run_id}.safetensors"

    @property
    def state(self) -> Path:
        return self.out / f"{self.run_id}{STATE_SUFFIX}"

    @property
    def lock(self) -> Path:
        return self.out / f"{self.run_id}.lock"

    @classmethod
    def of_state(cls, path: Path) -> RunFiles:
        return cls(path.parent, path.name.removesuffix(STATE_SUFFIX))

    def resume_command(self, processes: int = 1) -> str:
        """The command that continues the run; a data-parallel run is resumed by torchrun
        with as many processes (any other number also works, see TrainingState.rng_of)."""
        launcher = (f"torchrun --nproc_per_node {processes} -m pebench" if processes > 1
                    else "pebench")
        return f"{launcher} run --resume {self.run_id} --out {shlex.quote(str(self.out))}"


class RunLock:
    """Ownership of one run's files by this process (see the module docstring)."""

    def __init__(self, files: RunFiles, fd: int) -> None:
        self.files = files
        self._fd = fd

    @classmethod
    def reserve(cls, out: Path, make_id: Callable[[], str], attempts: int = 100) -> RunLock:
        """Lock a new run id: ``make_id()`` is called until it names no existing run."""
        out.mkdir(parents=True, exist_ok=True)
        for _ in range(attempts):
            files = RunFiles(out, make_id())
            try:
                fd = os.open(files.lock, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                continue
            if files.record.exists():  # a finished run of that id: keep its files apart
                os.close(fd)
                continue
            fcntl.flock(fd, fcntl.LOCK_EX)  # the file is new and ours: never blocks
            return cls(files, fd)
        raise PebenchError(f"could not find an unused run id in '{out}' after {attempts} "
                           "tries.")

    @classmethod
    def take(cls, files: RunFiles) -> RunLock:
        """Own an existing run (to resume it); refused while another process owns it."""
        for _ in range(100):
            fd = os.open(files.lock, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise PebenchError(f"run {files.run_id} is running in another process (its "
                                   f"lock '{files.lock}' is held); wait for it to end.") from None
            if _same_file(fd, files.lock):
                return cls(files, fd)
            os.close(fd)  # the owner released (removed) the file we opened: open it anew
        raise PebenchError(f"could not lock run {files.run_id}: '{files.lock}' keeps changing.")

    def release(self) -> None:
        """Remove the lock file, then let go of it."""
        self.files.lock.unlink(missing_ok=True)
        os.close(self._fd)


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.fstat(fd).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        return False


def is_running(files: RunFiles) -> bool:
    """Whether a live process owns the run (holds the flock on its lock file)."""
    try:
        fd = os.open(files.lock, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False
