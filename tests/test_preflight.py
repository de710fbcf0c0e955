"""The output folder check when runs started together (a sweep's jobs) check the same new
folder: one's clean-up may remove it while another probes it."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from pebench.errors import PebenchError
from pebench.preflight import check_output_dir


def test_a_folder_removed_during_the_check_is_made_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "runs"
    real = tempfile.TemporaryFile
    probes = []

    def removed_by_a_peer_first(*args: object, **kwargs: object) -> object:
        probes.append(1)
        if len(probes) == 1:  # the peer's clean-up ran between our mkdir and our probe
            out.rmdir()
        return real(*args, **kwargs)

    monkeypatch.setattr(tempfile, "TemporaryFile", removed_by_a_peer_first)
    check_output_dir(out)
    assert len(probes) == 2


def test_a_folder_that_keeps_vanishing_is_one_clear_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "runs"

    def always_removed(*args: object, **kwargs: object) -> object:
        out.rmdir()
        raise FileNotFoundError(2, "No such file or directory", str(out))

    monkeypatch.setattr(tempfile, "TemporaryFile", always_removed)
    with pytest.raises(PebenchError, match=r"cannot be written \(No such file or directory\)"):
        check_output_dir(out)
