"""What the registries hold, known without importing torch: the catalog behind ``pebench list``.

Registering a method, task, dataset or backbone means importing it, and with it torch and
timm: 1.2 s for torch alone on a 2-core machine, 3–4 s for all of it, for a command that
only prints names. So the first listing imports the registries once and writes what it
found (names, descriptions, each method's ``--set`` keys) to the user cache, under a
fingerprint of every source that could change it; later listings read that file.

The fingerprint covers the path, size and modification time of every ``.py`` file of the
packages that hold the built-in entries (``pebench``, ``methods``, ``tasks``) and of each
installed plug-in's top-level package, and the plug-in entry points themselves. Any edit,
install or uninstall changes it, so a stale catalog is never read; a plug-in that fails to
import fails the listing as before, and nothing is cached.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
from collections.abc import Iterable, Iterator
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pebench
from pebench.atomic import atomic_write_text
from pebench.cache import cache_dir

# Listing name -> the entry-point group of its plug-ins (pebench.registry.Registry).
GROUPS = {"methods": "pebench.methods", "tasks": "pebench.tasks",
          "datasets": "pebench.datasets", "backbones": "pebench.backbones"}
# Top-level packages that register the built-in entries.
BUILTIN_PACKAGES = ("pebench", "methods", "tasks")
FORMAT = 2  # bump when the catalog's layout changes

Catalog = dict[str, list[dict[str, Any]]]


def catalog() -> Catalog:
    """The catalog, from the cache when its fingerprint matches, else built and cached."""
    path = cache_dir() / "catalog" / f"{fingerprint(source_roots(), plugin_entry_points())}.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        pass
    built = build()
    # A read-only cache costs the next listing time, not this one its result.
    with contextlib.suppress(OSError):
        atomic_write_text(path, json.dumps(built))
    return built


def build() -> Catalog:
    """Import every registry and describe each entry (the slow path)."""
    from pebench.backbones import BACKBONES
    from pebench.data.base import DATASETS
    from pebench.method import METHODS
    from pebench.options import option_docs
    from pebench.task import TASKS

    registries: dict[str, Any] = {"methods": METHODS, "tasks": TASKS, "datasets": DATASETS,
                                  "backbones": BACKBONES}
    built: Catalog = {}
    for kind, registry in registries.items():
        built[kind] = [{"name": e.name, "description": e.description} for e in registry.entries()]
    # What checking a run's options needs besides the names (pebench.config.precheck).
    for entry in built["methods"]:
        entry["options"] = [vars(doc) for doc in option_docs(METHODS.get(entry["name"]).Config)]
    for entry in built["datasets"]:
        info = DATASETS.get(entry["name"]).info
        entry.update(tasks=list(info.tasks), default_tasks=list(info.default_tasks),
                     default_img_size=info.default_img_size)
    for entry in built["backbones"]:
        entry["patch_size"] = BACKBONES.get(entry["name"]).patch_size
    return built


def plugin_entry_points() -> list[tuple[str, str, str]]:
    """(group, name, target) of every installed plug-in, in a stable order."""
    return sorted((group, ep.name, ep.value) for group in GROUPS.values()
                  for ep in entry_points(group=group))


def source_roots() -> list[Path]:
    """The files or package folders whose sources define the catalog's entries."""
    roots = [Path(pebench.__file__).resolve().parent]
    tops = [*BUILTIN_PACKAGES[1:], *(target.partition(":")[0].split(".")[0]
                                     for _, _, target in plugin_entry_points())]
    for top in dict.fromkeys(tops):
        roots.extend(_locations(top))
    return roots


def _locations(top: str) -> Iterator[Path]:
    """Where a top-level module lives, found without importing it. Every finder is asked,
    not only the path-based one: an editable install maps its packages through its own."""
    spec = importlib.util.find_spec(top)
    if spec is None:
        return
    if spec.submodule_search_locations:
        yield from (Path(p).resolve() for p in spec.submodule_search_locations)
    elif spec.origin:
        yield Path(spec.origin).resolve()


def fingerprint(roots: Iterable[Path], plugins: Iterable[tuple[str, str, str]]) -> str:
    """A digest of the sources (path, size, modification time of each ``.py`` file under
    ``roots``) and of the plug-in entry points."""
    digest = hashlib.sha256(f"format {FORMAT} pebench {pebench.__version__}\n".encode())
    for group, name, target in plugins:
        digest.update(f"plugin {group} {name} {target}\n".encode())
    for root in roots:
        files = sorted(root.rglob("*.py")) if root.is_dir() else [root]
        for path in files:
            stat = path.stat()
            digest.update(f"{path} {stat.st_size} {stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:20]
