"""Third-party methods, tasks, datasets and backbones register through the entry-point groups
``pebench.methods``, ``pebench.tasks``, ``pebench.datasets`` and ``pebench.backbones``."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pebench.errors import PebenchError
from pebench.registry import Registry


def _install_fake_distribution(root: Path, module: str, source: str, entry: str,
                               group: str = "pebench.methods") -> None:
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / "pebench_plugin_demo-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: pebench-plugin-demo\n"
                                   "Version: 1.0\n")
    (info / "entry_points.txt").write_text(f"[{group}]\n{entry}\n")


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


PLUGINS = '''
    import dataclasses

    from pebench.backbones import BackboneSpec
    from pebench.data.synthetic import SyntheticSource
    from tasks.semseg import SemsegTask

    PICO = BackboneSpec("swin-pico", "a plug-in backbone (test only)", 16, (1, 1, 1, 1),
                        (1, 1, 2, 4), 2, default_img_size=32, decoder_widths=(4, 4, 4, 4))

    class PluginSegmentation(SemsegTask):
        name = "plugin-semseg"
        description = "a plug-in task (test only)"

    class PluginSynthetic(SyntheticSource):
        info = dataclasses.replace(SyntheticSource.info, name="plugin-synthetic")
        description = "a plug-in dataset (test only)"
'''


def test_task_dataset_and_backbone_plugins_reach_the_command(tmp_path: Path) -> None:
    (tmp_path / "demo_plugins.py").write_text(textwrap.dedent(PLUGINS))
    info = tmp_path / "pebench_plugins_demo-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: pebench-plugins-demo\n"
                                   "Version: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[pebench.tasks]\nplugin-semseg = demo_plugins:PluginSegmentation\n"
        "[pebench.datasets]\nplugin-synthetic = demo_plugins:PluginSynthetic\n"
        "[pebench.backbones]\nswin-pico = demo_plugins:PICO\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "COLUMNS": "200"}
    listing = subprocess.run(["pebench", "list"], capture_output=True, text=True, env=env,
                             check=True, timeout=300).stdout
    for line in ("plugin-semseg", "a plug-in task (test only)", "plugin-synthetic",
                 "a plug-in dataset (test only)", "swin-pico", "a plug-in backbone"):
        assert line in listing
    # The backbone and the dataset serve a real command: counts on the plug-in backbone.
    counts = subprocess.run(["pebench", "params", "--methods", "decoder-only,lora",
                             "--backbone", "swin-pico", "--dataset", "plugin-synthetic",
                             "--format", "csv"], capture_output=True, text=True, env=env,
                            check=True, timeout=300).stdout
    rows = {line.split(",")[0]: line.split(",") for line in counts.splitlines()[1:]}
    frozen, lora = int(rows["decoder-only"][6]), int(rows["lora"][6])  # total parameters
    assert frozen < 500_000, "swin-nano's encoder alone has 2.3M: the plug-in was not used"
    assert lora > frozen
