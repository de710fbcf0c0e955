"""Built-in tasks. Importing this package registers every one of them with ``pebench.task``."""

from __future__ import annotations

from tasks import depth, edge, human_parts, normals, saliency, semseg

__all__ = ["depth", "edge", "human_parts", "normals", "saliency", "semseg"]
