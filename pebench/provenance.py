"""What produced a run: the software versions and the git commit of the pebench source.

The training side writes these into a record when a run starts; they import torch and timm
to ask their versions, which is why they are not part of ``pebench.results``.
"""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path

import numpy
import timm
import torch

import pebench


def software_versions() -> dict[str, str]:
    return {"pebench": pebench.__version__, "python": platform.python_version(),
            "torch": torch.__version__, "timm": timm.__version__, "numpy": numpy.__version__}


def git_commit() -> str | None:
    """The commit of the pebench source tree, with ``-dirty`` when it has local changes;
    None for an installed copy outside a git checkout."""
    source = Path(pebench.__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=source, capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=source, capture_output=True, text=True, timeout=10,
                               check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{commit}-dirty" if dirty else commit
