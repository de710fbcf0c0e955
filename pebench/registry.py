"""One small registry type, used for methods, tasks, datasets and backbones."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Generic, TypeVar

from pebench.errors import PebenchError, unknown_name

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    name: str
    obj: T
    description: str


class Registry(Generic[T]):
    """Maps names to objects.

    Built-in entries live in the packages named by ``builtin_modules`` and register themselves
    with a decorator when imported; third-party entries are found through the entry-point
    group ``entry_point_group``. Both are loaded lazily on first lookup, so importing the
    harness stays cheap and the harness never names a method or a task itself.
    """

    def __init__(self, kind: str, builtin_modules: tuple[str, ...] = (),
                 entry_point_group: str | None = None) -> None:
        self.kind = kind
        self._builtin_modules = builtin_modules
        self._entry_point_group = entry_point_group
        self._entries: dict[str, Entry[T]] = {}
        self._loaded = False

    def register(self, name: str, description: str = "") -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            self.add(name, obj, description)
            return obj
        return decorator

    def add(self, name: str, obj: T, description: str = "") -> None:
        existing = self._entries.get(name)
        if existing is not None and existing.obj is not obj:
            raise PebenchError(f"{self.kind} '{name}' is registered twice "
                               f"({_where(existing.obj)} and {_where(obj)}); rename one of them.")
        if not description:
            doc = (getattr(obj, "__doc__", None) or "").strip()
            description = getattr(obj, "description", "") or (doc.splitlines()[0] if doc else "")
        self._entries[name] = Entry(name, obj, description)

    def get(self, name: str) -> T:
        self._load()
        if name not in self._entries:
            raise unknown_name(self.kind, name, self._entries,
                               hint=f"Run 'pebench list {self.kind}s' to see them.")
        return self._entries[name].obj

    def names(self) -> list[str]:
        self._load()
        return sorted(self._entries)

    def entries(self) -> Iterator[Entry[T]]:
        self._load()
        for name in sorted(self._entries):
            yield self._entries[name]

    def __contains__(self, name: str) -> bool:
        self._load()
        return name in self._entries

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        for module in self._builtin_modules:
            importlib.import_module(module)
        if self._entry_point_group:
            for ep in entry_points(group=self._entry_point_group):
                try:
                    obj = ep.load()
                except Exception as exc:  # a broken plug-in must not take the harness down
                    raise PebenchError(
                        f"the {self.kind} plug-in '{ep.name}' ({ep.value}) failed to import: "
                        f"{exc}. Fix or uninstall the package that provides it."
                    ) from exc
                # A plug-in may register itself on import; if not, register the loaded object.
                if ep.name not in self._entries:
                    self.add(ep.name, obj)


def _where(obj: object) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', obj)}"
