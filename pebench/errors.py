"""The one exception type that reaches users as a single line instead of a traceback."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class PebenchError(Exception):
    """A problem with what the user asked for: the message says what, what is valid, what to do."""


class MissingDependency(PebenchError):
    """An optional package that one method needs is not installed (the message says how to
    install it); commands that go over every method skip that one and say so."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type when it has none), for errors
    that quote a library's reason in one line."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def unknown_name(kind: str, name: str, valid: Iterable[str], hint: str = "") -> PebenchError:
    """Build the error for a name that is not registered, with a 'did you mean' suggestion."""
    valid = sorted(valid)
    close = difflib.get_close_matches(name, valid, n=1)
    suggestion = f" Did you mean '{close[0]}'?" if close else ""
    tail = f" {hint}" if hint else ""
    return PebenchError(
        f"unknown {kind} '{name}'.{suggestion} Valid: {', '.join(valid)}.{tail}"
    )
