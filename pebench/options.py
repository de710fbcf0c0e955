"""Method hyperparameters that explain themselves: a Config field declared with ``option``
carries a one-line help, which ``pebench list methods --verbose`` prints with its ``--set``
key, type and default."""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any, Literal


def option(default: Any, help: str) -> Any:
    """A Config field (a ``--set`` key) with its one-line help, which ``pebench list methods
    --verbose`` prints beside its type and default."""
    return field(default=default, metadata={"help": help})


def option_help(config_cls: type, name: str) -> str | None:
    """The help of a Config field, from the nearest class that gave one: a subclass that only
    changes a default (``reduction: int = 16``) keeps its parent's help."""
    for klass in config_cls.__mro__:
        found = getattr(klass, "__dataclass_fields__", {}).get(name)
        if found is not None and "help" in found.metadata:
            return str(found.metadata["help"])
    return None


@dataclass(frozen=True)
class OptionDoc:
    """One ``--set`` key of a method as ``pebench list methods --verbose`` shows it."""

    key: str
    kind: str
    default: str
    help: str


def option_docs(config_cls: type) -> list[OptionDoc]:
    """Every field of a method's Config: its ``--set`` key, type, default and help."""
    hints = typing.get_type_hints(config_cls)
    return [OptionDoc(f.name, _kind_text(hints[f.name]), _value_text(f.default),
                      option_help(config_cls, f.name) or "")
            for f in dataclasses.fields(config_cls)]


def _kind_text(kind: Any) -> str:
    if typing.get_origin(kind) is Literal:
        return "|".join(str(a) for a in typing.get_args(kind))
    if typing.get_origin(kind) is tuple:
        return f"{typing.get_args(kind)[0].__name__},…"
    return "true|false" if kind is bool else getattr(kind, "__name__", str(kind))


def _value_text(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    if isinstance(value, bool):
        return str(value).lower()
    return str(value) if value != "" else "(empty)"
