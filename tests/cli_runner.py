"""Drive the ``pebench`` command in-process, as a user would call it."""

from __future__ import annotations

import sys

import pytest

from pebench.cli import main


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str],
            monkeypatch: pytest.MonkeyPatch) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of ``pebench ARGV``."""
    monkeypatch.setattr(sys, "argv", ["pebench", *argv])
    with pytest.raises(SystemExit) as exited:
        main()
    captured = capsys.readouterr()
    return int(exited.value.code or 0), captured.out, captured.err
