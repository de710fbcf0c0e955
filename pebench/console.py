"""Printing for the command line: the two consoles, lines without markup, tables that are
never elided, and comparison tables shared by ``compare`` and ``sweep``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from pebench.compare import Comparison

console = Console()
errors = Console(stderr=True)


def note(line: str) -> None:
    """A line on stderr, as printed (no rich markup), so stdout stays the table."""
    errors.print(line, highlight=False, soft_wrap=True, markup=False)


def say(line: str) -> None:
    """A line on stdout, as printed."""
    console.print(line, highlight=False, soft_wrap=True, markup=False)


def print_unelided(table: Table) -> None:
    """Print at the table's natural width even on a narrow console: a number is never
    elided."""
    natural = console.measure(table, options=console.options.update_width(1000)).maximum
    (console if natural <= console.width else Console(width=natural)).print(table)


def print_at_least_minimum(table: Table) -> None:
    """Print at the console's width, or wider where the table's unwrappable columns and
    minimum widths need it (rich would otherwise collapse a column to nothing)."""
    minimum = console.measure(table, options=console.options.update_width(1000)).minimum
    (console if minimum <= console.width else Console(width=minimum)).print(table)


def print_comparison(comparison: Comparison) -> None:
    """The rich table, its notes, and the runs that are not completed, by status."""
    from pebench.report import rich_table, unfinished_groups

    print_unelided(rich_table(comparison))
    for line in comparison.notes:
        say(f"note: {line}")
    for heading, lines in unfinished_groups(comparison):
        say(heading)
        for line in lines:
            say(f"  {line}")


def split_list(value: str | None) -> tuple[str, ...] | None:
    """``"a, b,"`` → ``("a", "b")``; None stays None (the option was not given)."""
    if value is None:
        return None
    return tuple(part.strip() for part in value.split(",") if part.strip())
