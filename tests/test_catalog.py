"""The catalog behind ``pebench list``: what the registries hold, cached under a fingerprint
of their sources, so that a listing after the first imports neither torch nor timm."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from processes import pebench_command

from pebench import catalog
from pebench.method import METHODS
from pebench.options import option_docs
from pebench.task import TASKS

# Prints whether listing imported torch or timm, in a fresh process.
PROBE = ("import sys; from typer.testing import CliRunner; from pebench.cli import app; "
         "result = CliRunner().invoke(app, sys.argv[1:]); assert result.exit_code == 0, "
         "result.output; print(sorted({'torch', 'timm'} & set(sys.modules)))")


def list_in_fresh_process(*args: str) -> list[str]:
    done = subprocess.run([sys.executable, "-c", PROBE, "list", *args], capture_output=True,
                          text=True, env=os.environ, timeout=120, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1].replace("'", '"'))


def test_the_catalog_is_what_the_registries_hold() -> None:
    listed = catalog.build()
    assert [e["name"] for e in listed["methods"]] == METHODS.names()
    assert [e["name"] for e in listed["tasks"]] == TASKS.names()
    lora = next(e for e in listed["methods"] if e["name"] == "lora")
    assert lora["description"] == METHODS.get("lora").description
    assert lora["options"] == [vars(d) for d in option_docs(METHODS.get("lora").Config)]
    rank = next(o for o in lora["options"] if o["key"] == "rank")
    assert (rank["kind"], rank["default"]) == ("int", "4") and rank["help"]


def test_a_listing_after_the_first_imports_neither_torch_nor_timm() -> None:
    assert list_in_fresh_process() == ["timm", "torch"]  # the first builds the catalog
    assert list_in_fresh_process() == []
    assert list_in_fresh_process("methods", "--verbose") == []
    cached = list((Path(os.environ["XDG_CACHE_HOME"]) / "pebench" / "catalog").iterdir())
    assert len(cached) == 1 and json.loads(cached[0].read_text()) == catalog.build()
    shown = subprocess.run(pebench_command("list", "methods"), capture_output=True, text=True,
                           check=True).stdout
    assert all(name in shown for name in METHODS.names())


def test_any_change_to_a_source_or_a_plugin_changes_the_fingerprint(tmp_path: Path) -> None:
    package = tmp_path / "plugin"
    package.mkdir()
    module = package / "method.py"
    module.write_text("X = 1\n")
    plugins = [("pebench.methods", "mine", "plugin.method:Mine")]
    first = catalog.fingerprint([package], plugins)
    assert catalog.fingerprint([package], plugins) == first
    module.write_text("X = 22\n")  # another size
    edited = catalog.fingerprint([package], plugins)
    os.utime(module, ns=(0, 0))  # same size, another modification time
    touched = catalog.fingerprint([package], plugins)
    (package / "helper.py").write_text("")
    added = catalog.fingerprint([package], plugins)
    unplugged = catalog.fingerprint([package], [])
    assert len({first, edited, touched, added, unplugged}) == 5


def test_the_sources_include_the_builtin_packages_and_each_plugins_package() -> None:
    roots = catalog.source_roots()
    names = {root.name for root in roots}
    assert {"pebench", "methods", "tasks"} <= names
    assert all(root.exists() for root in roots)


def test_the_sources_are_found_outside_the_checkout_too(tmp_path: Path) -> None:
    """The console script runs with its own folder, not the checkout, on sys.path: the
    built-in packages must still be found (an editable install maps them through a finder
    of its own), or adding a method would not change the fingerprint and the listing, and
    `pebench run`, would not know it."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, "-c", "from pebench.catalog import source_roots; "
         "print(sorted(root.name for root in source_roots()))"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120, check=True)
    assert {"pebench", "methods", "tasks"} <= set(json.loads(done.stdout.replace("'", '"')))
