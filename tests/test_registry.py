"""Third-party methods register through the ``pebench.methods`` entry-point group."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from pebench.errors import PebenchError
from pebench.registry import Registry


def _install_fake_distribution(root: Path, module: str, source: str, entry: str) -> None:
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / "pebench_plugin_demo-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: pebench-plugin-demo\n"
                                   "Version: 1.0\n")
    (info / "entry_points.txt").write_text(f"[pebench.methods]\n{entry}\n")


def test_entry_point_method_is_registered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _install_fake_distribution(tmp_path, "demo_plugin", '''
        from pebench.method import Method

        class FrozenTwice(Method):
            """A plug-in method: frozen encoder (test only)."""
            name = "frozen-twice"
            description = "a plug-in method"

            def attach(self, encoder):
                return encoder
        ''', "frozen-twice = demo_plugin:FrozenTwice")
    monkeypatch.syspath_prepend(str(tmp_path))
    # A fresh registry: the global one has already loaded its entry points in this process.
    registry: Registry[object] = Registry("method", entry_point_group="pebench.methods")
    assert "frozen-twice" in registry.names()
    assert registry.get("frozen-twice").__name__ == "FrozenTwice"
    assert registry.entries().__next__().description == "a plug-in method"
    sys.modules.pop("demo_plugin", None)


def test_broken_plugin_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _install_fake_distribution(tmp_path, "broken_plugin", "raise ImportError('no torch_foo')\n",
                               "broken = broken_plugin:Thing")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry: Registry[object] = Registry("method", entry_point_group="pebench.methods")
    with pytest.raises(PebenchError, match=r"plug-in 'broken'.*failed to import: no torch_foo"):
        registry.names()


def test_duplicate_names_are_refused() -> None:
    registry: Registry[object] = Registry("thing")
    registry.add("a", object())
    with pytest.raises(PebenchError, match="registered twice"):
        registry.add("a", object())
