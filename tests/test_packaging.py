"""methods/, tasks/ and the published reference table ship inside the distribution: build a
wheel, install it (not editable) into a fresh directory and use it from outside the source
tree."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from pebench.pretrain import PretrainConfig, weights_file_name

ROOT = Path(__file__).resolve().parents[1]


def test_non_editable_install_ships_methods_and_tasks(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pebench", "methods", "tasks", "results/reference"):
        shutil.copytree(ROOT / name, source / name,
                        ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "--quiet", "-w", str(wheels), str(source)], check=True, timeout=300)
    (wheel,) = wheels.glob("pebench-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for expected in ("methods/__init__.py", "methods/finetuning.py", "tasks/semseg.py",
                     "tasks/normals.py", "pebench/cli.py", "pebench/data/synthetic.py",
                     "pebench/reference_data/published_pascal_context_swin_t.csv",
                     "pebench/reference_data/README.md",
                     "pebench/data/pascal_context_maps/context_classes.json",
                     "pebench/data/pascal_context_maps/nyu_classes.json",
                     f"pebench/embedded_weights/{weights_file_name(PretrainConfig())}"):
        assert expected in names, expected
    assert any(n.endswith("entry_points.txt") for n in names)

    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--quiet",
                    "--target", str(target), str(wheel)], check=True, timeout=300)
    probe = ("import sys; sys.path.insert(0, sys.argv[1]);"
             "import methods, tasks, pebench;"
             "from pebench.method import METHODS; from pebench.task import TASKS;"
             "from pebench import published; from importlib import resources;"
             "print(methods.__file__); print(tasks.__file__);"
             "print(','.join(METHODS.names())); print(','.join(TASKS.names()));"
             "print(resources.files(pebench) / 'reference_data' / published.TABLE_FILE);"
             "rows = published.published_rows();"
             "print(len(rows), sum(not r.consistent for r in rows),"
             " published.published_reference_values()['normals']);"
             "from pebench.data.pascal_context import normals_valid_classes;"
             "print(len(normals_valid_classes()));"
             "from pebench.pretrain import PretrainConfig, shipped_weights_path;"
             "shipped = shipped_weights_path(PretrainConfig());"
             "print(shipped if shipped.is_file() else 'missing')")
    result = subprocess.run([sys.executable, "-c", probe, str(target)], cwd=tmp_path,
                            capture_output=True, text=True, check=True, timeout=120)
    lines = result.stdout.strip().splitlines()
    (methods_file, tasks_file, method_names, task_names, table_file, published, normals,
     weights) = lines
    assert methods_file.startswith(str(target))
    assert table_file.startswith(str(target)) and Path(table_file).is_file()
    assert published.split() == ["18", "1", "17.97"]  # rows, inconsistent rows, single-task
    assert normals == "170"  # the class maps travel in the wheel as package data
    assert weights.startswith(str(target))  # so do the embedded weights: no build on first use
    assert tasks_file.startswith(str(target))
    assert {"single-task", "mtl-full", "decoder-only"} <= set(method_names.split(","))
    assert {"semseg", "human_parts", "saliency", "normals", "depth"} <= set(task_names.split(","))
