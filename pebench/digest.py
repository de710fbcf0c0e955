"""The sha256 of a file, read in blocks: how records and the README name a weights file."""

from __future__ import annotations

import hashlib
from pathlib import Path


def file_sha256(path: Path | None) -> str | None:
    if path is None:
        return None
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
