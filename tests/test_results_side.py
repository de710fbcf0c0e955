"""The results side stands alone: reading records, comparing, reporting and plotting import
neither torch nor timm, and records carry what reading them needs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from test_compare import record

from pebench.compare import compare
from pebench.report import render
from pebench.results import read_record

# Everything `pebench compare` runs, the figure included, and the command line's own module.
RESULTS_SIDE = ("pebench.cli", "pebench.results", "pebench.runs", "pebench.compare",
                "pebench.report", "pebench.plot", "pebench.published", "pebench.reference",
                "pebench.ranking")


def four_runs(out: Path, legacy: bool = False) -> Path:
    out.mkdir()
    for method, seed, semseg, normals in (("single-task", 0, 40.0, 20.0),
                                          ("single-task", 1, 44.0, 22.0),
                                          ("mtl-full", 0, 46.2, 23.1),
                                          ("decoder-only", 0, 37.8, 23.1)):
        record(out, method, seed, semseg, normals, 1_000_000, 30.0, legacy=legacy)
    return out


def test_comparing_and_plotting_records_imports_neither_torch_nor_timm(tmp_path: Path) -> None:
    runs = four_runs(tmp_path / "runs")
    script = f"""
import sys
from pathlib import Path
for name in {RESULTS_SIDE!r}:
    __import__(name)
from pebench.compare import compare
from pebench.plot import figure_data, save_figure
from pebench.report import render
comparison = compare(Path({str(runs)!r}), with_published=True)
text = render(comparison, "md")
save_figure(figure_data(comparison), Path({str(tmp_path / "figure.png")!r}))
print(sorted(m for m in ("torch", "timm", "torchvision") if m in sys.modules))
print(text)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            check=True, timeout=120)
    loaded, table = result.stdout.split("\n", 1)
    assert loaded == "[]"
    assert "| mtl-full |" in table and "normals mean ↓" in table
    assert (tmp_path / "figure.png").stat().st_size > 0


def test_records_without_their_primary_metrics_read_as_the_registered_tasks_declare(
        tmp_path: Path) -> None:
    recorded = compare(four_runs(tmp_path / "recorded"))
    legacy = compare(four_runs(tmp_path / "legacy", legacy=True))
    assert render(legacy, "md") == render(recorded, "md").replace(str(tmp_path / "recorded"),
                                                                 str(tmp_path / "legacy"))
    assert [row.delta_m for row in legacy.rows] == [row.delta_m for row in recorded.rows]


def test_the_reference_is_whatever_run_says_it_is_one_not_a_name(tmp_path: Path) -> None:
    # A plug-in reference method under another name serves as the Δm reference because its
    # runs say so; a legacy record is read as its registered method declares.
    out = four_runs(tmp_path / "runs")
    for path in out.glob("single-task-*.json"):
        data = json.loads(path.read_text())
        data["method"] = "my-single-task"
        path.write_text(json.dumps(data))
    renamed = compare(out)
    assert renamed.rows[0].method == "my-single-task" and renamed.rows[0].is_reference
    original = compare(four_runs(tmp_path / "again"))
    # The label names the reference runs' method; the values are the same.
    assert renamed.references == [label.replace("single-task", "my-single-task")
                                  for label in original.references]
    assert [row.delta_m for row in renamed.rows] == [row.delta_m for row in original.rows]
    legacy = compare(four_runs(tmp_path / "legacy", legacy=True))
    assert legacy.rows[0].method == "single-task" and legacy.rows[0].is_reference


def test_a_record_with_a_non_boolean_reference_flag_is_refused(tmp_path: Path) -> None:
    out = four_runs(tmp_path / "runs")
    path = next(out.glob("mtl-full-*.json"))
    data = json.loads(path.read_text())
    data["delta_m_reference_run"] = "yes"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="non-boolean delta_m_reference_run"):
        read_record(path)


@pytest.mark.parametrize("bad", [{"name": "mIoU"}, {"name": 3, "higher_is_better": True},
                                 "mIoU"])
def test_a_record_with_a_malformed_primary_metric_is_refused(tmp_path: Path,
                                                             bad: object) -> None:
    out = four_runs(tmp_path / "runs")
    path = next(out.glob("mtl-full-*.json"))
    data = json.loads(path.read_text())
    data["primary_metric"]["semseg"] = bad
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"invalid primary_metric\['semseg'\]"):
        read_record(path)
