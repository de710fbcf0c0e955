"""The harness names no method and no task: it reaches them through the registries and what
they declare (issue 12). Dataset definitions are the exception by nature: a dataset says
which tasks its labels serve."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from pebench.method import METHODS
from pebench.task import TASKS

PACKAGE = Path(__file__).resolve().parent.parent / "pebench"
# The built-in datasets (their infos, loaders, fixtures and scene generator).
DATASET_DEFINITIONS = {"infos.py", "nyud.py", "pascal_context.py", "person_parts.py",
                       "fixtures.py", "scenes.py", "synthetic.py"}


def docstrings(tree: ast.Module) -> set[int]:
    nodes = [tree, *(n for n in ast.walk(tree)
                     if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)))]
    return {id(node.body[0].value) for node in nodes
            if node.body and isinstance(node.body[0], ast.Expr)
            and isinstance(node.body[0].value, ast.Constant)}


def names_used(source: str, where: str, pattern: re.Pattern[str]) -> list[str]:
    """Where a string literal (not a docstring) or an identifier contains a name."""
    tree = ast.parse(source)
    skip = docstrings(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = None if id(node) in skip else node.value
        elif isinstance(node, ast.Name):
            text = node.id
        elif isinstance(node, ast.Attribute):
            text = node.attr
        else:
            continue
        if text is not None and (match := pattern.search(text)):
            found.append(f"{where}:{node.lineno}: "
                         f"{match.group(0)!r} in {text[:60]!r}")
    return found


def test_the_harness_names_no_method_or_task() -> None:
    names = sorted({*METHODS.names(), *TASKS.names()}, key=len, reverse=True)
    # A whole word: "edge" in "knowledge" or "lora" in "explorative" is no use of a name.
    pattern = re.compile(r"(?<![\w-])(" + "|".join(map(re.escape, names)) + r")(?![\w-])")
    found = [hit for path in sorted(PACKAGE.rglob("*.py"))
             if path.name not in DATASET_DEFINITIONS or path.parent.name != "data"
             for hit in names_used(path.read_text(encoding="utf-8"),
                                   str(path.relative_to(PACKAGE.parent)), pattern)]
    assert not found, "\n".join(found)


def test_the_scan_finds_a_name() -> None:
    """The scan itself: a name in a string or an identifier is found, a docstring is not."""
    pattern = re.compile(r"(?<![\w-])(mtl-full|semseg)(?![\w-])")
    source = '"""About semseg."""\nx = "mtl-full"\nsemseg = 1\n'
    assert [hit.split(": ")[1] for hit in names_used(source, "probe", pattern)] == [
        "'mtl-full' in 'mtl-full'", "'semseg' in 'semseg'"]
