"""``pebench compare``: the paper's table and figure from run records.

The records are written as fixtures with RunRecord (the schema lives in one place) and hold
round numbers, so every mean, std and Δm below is computed by hand. Setting A (synthetic,
swin-nano, 96 px, 300 steps, batch 8) has two tasks, semseg (↑) and normals (↓), and its
single-task reference is semseg (40 + 44) / 2 = 42, normals (20 + 22) / 2 = 21.
"""

from __future__ import annotations

import dataclasses
import io
import json
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pandas as pd
import pytest
from cli_runner import run_cli

from pebench.compare import Comparison, Row, compare
from pebench.reference import ReferenceSetting, find_reference, finished_run_delta_m
from pebench.report import latex_escape
from pebench.results import RunRecord

SHA = "ab" * 32


def record(out: Path, method: str, seed: int, semseg: float, normals: float, trainable: int,
           train_s: float, *, steps: int = 300, dataset: str = "synthetic",
           backbone: str = "swin-nano", img_size: int = 96, batch_size: int = 8,
           lr: float = 1e-3, status: str = "completed", error: str | None = None,
           precision: str = "fp32", legacy: bool = False) -> RunRecord:
    """A record as a run writes it; ``legacy``: as runs wrote it before they recorded how to
    read their primary metrics."""
    run = RunRecord(
        run_id=f"{method}-{dataset}-{steps}-b{batch_size}-lr{lr}-s{seed}",
        created_at="2024-05-01T12:00:00+00:00", method=method, method_config={"rank": 4},
        tasks=["semseg", "normals"], dataset=dataset, backbone=backbone, img_size=img_size,
        seed=seed, steps=steps, config={"batch_size": batch_size, "lr": lr, "seed": seed,
                                        # fp32: as records from before --precision, without it
                                        **({"precision": precision} if precision != "fp32"
                                           else {})},
        status=status, error=error,  # type: ignore[arg-type]
        weights={"source": "embedded", "path": None, "sha256": SHA},
        primary={"semseg": semseg, "normals": normals},
        primary_metric={} if legacy else {
            "semseg": {"name": "mIoU", "higher_is_better": True},
            "normals": {"name": "mean", "higher_is_better": False}},
        delta_m_reference_run=None if legacy else method == "single-task",
        params={"trainable": trainable, "total": 9_000_000}, timing={"train_s": train_s})
    run.write(out)
    return run


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    """Setting A: 4 methods × 2 seeds (lora_r4: its name needs escaping in LaTeX), one failed
    run, one setting without reference (600 steps), and three files that are not records."""
    out = tmp_path / "runs"
    out.mkdir()
    record(out, "single-task", 0, 40.0, 20.0, 9_000_000, 60.0)  # Δm 0
    record(out, "single-task", 1, 44.0, 22.0, 9_000_000, 66.0)  # Δm 0
    record(out, "mtl-full", 0, 46.2, 23.1, 2_500_000, 30.0)  # +10 %, -10 %: Δm 0
    record(out, "mtl-full", 1, 50.4, 21.0, 2_500_000, 30.0)  # +20 %, 0 %: Δm +10
    record(out, "decoder-only", 0, 37.8, 23.1, 200_000, 15.0)  # -10 %, -10 %: Δm -10
    record(out, "decoder-only", 1, 33.6, 23.1, 200_000, 21.0)  # -20 %, -10 %: Δm -15
    record(out, "lora_r4", 0, 44.1, 21.0, 400_000, 24.0)  # +5 %, 0 %: Δm +2.5
    record(out, "lora_r4", 1, 42.0, 19.95, 400_000, 24.0)  # 0 %, +5 %: Δm +2.5
    record(out, "mtl-full", 2, 99.0, 1.0, 2_500_000, 1.0, status="failed",
           error="RuntimeError: CUDA out of memory")
    record(out, "mtl-full", 0, 45.0, 20.0, 2_500_000, 60.0, steps=600)  # no reference
    (out / "corrupt.json").write_text('{"schema": "pebench.run/1", "run_id": ')
    (out / "foreign.json").write_text(json.dumps({"name": "a dataset card", "version": 2}))
    (out / "other-schema.json").write_text(json.dumps({"schema": "other.tool/3"}))
    return out


def row_of(comparison: Comparison, method: str, steps: int = 300) -> Row:
    (row,) = [r for r in comparison.ours if r.method == method and r.setting["steps"] == steps]
    return row


def test_means_sample_stds_delta_m_and_seed_counts(runs: Path) -> None:
    comparison = compare(runs)
    mtl = row_of(comparison, "mtl-full")
    assert mtl.n == 2
    assert mtl.metrics["semseg"].mean == pytest.approx(48.3)
    assert mtl.metrics["semseg"].std == pytest.approx(2.9698485)  # 4.2 / √2 (ddof=1)
    assert mtl.metrics["normals"].mean == pytest.approx(22.05)
    assert mtl.metrics["normals"].std == pytest.approx(1.4849242)
    assert mtl.delta_m.mean == pytest.approx(5.0)
    assert mtl.delta_m.std == pytest.approx(7.0710678)  # ddof=0 would give 5.0
    assert mtl.params_m == pytest.approx(2.5)
    assert mtl.step_ms.mean == pytest.approx(100.0) and mtl.step_ms.std == pytest.approx(0.0)

    decoder = row_of(comparison, "decoder-only")
    assert decoder.delta_m.mean == pytest.approx(-12.5)
    assert decoder.delta_m.std == pytest.approx(3.5355339)
    assert decoder.step_ms.mean == pytest.approx(60.0)
    assert decoder.step_ms.std == pytest.approx(14.142136)
    lora = row_of(comparison, "lora_r4")
    assert (lora.delta_m.mean, lora.delta_m.std) == (pytest.approx(2.5), pytest.approx(0.0))
    single = row_of(comparison, "single-task")
    assert single.delta_m.mean == pytest.approx(0.0) and single.n == 2
    assert single.metrics["semseg"].mean == pytest.approx(42.0)

    lone = row_of(comparison, "mtl-full", steps=600)
    assert lone.n == 1 and lone.metrics["semseg"].std is None and lone.delta_m is None
    # Single-task first, then by trainable parameters; the 600-step setting after.
    assert [(r.method, r.setting["steps"]) for r in comparison.ours] == [
        ("single-task", 300), ("decoder-only", 300), ("lora_r4", 300), ("mtl-full", 300),
        ("mtl-full", 600)]
    assert comparison.shown_columns == ["steps"]  # the only setting column that differs


def test_delta_m_omitted_with_a_note(runs: Path) -> None:
    comparison = compare(runs)
    assert len(comparison.references) == 1
    assert comparison.references[0].startswith("mean of 2 single-task runs (synthetic, ")
    (note,) = [n for n in comparison.notes if n.startswith("Δm omitted")]
    assert "mtl-full (dataset synthetic" in note and "steps 600" in note
    assert "no completed Δm-reference run of the same setting" in note


def test_markdown_table(runs: Path, capsys: pytest.CaptureFixture[str],
                        monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, _ = run_cli(["compare", "--results", str(runs), "--format", "md"], capsys,
                           monkeypatch)
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == ("| method | steps | semseg mIoU ↑ | normals mean ↓ | Δm (%) ↑ | params (M) "
                        "| ms/step | n |")
    assert "| mtl-full | 300 | 48.30 ± 2.97 | 22.05 ± 1.48 | +5.00 ± 7.07 | 2.50 | 100.0 ± 0.0 "\
           "| 2 |" in lines
    assert "| mtl-full | 600 | 45.00 | 20.00 | — | 2.50 | 100.0 | 1 |" in lines  # no ±
    assert "| decoder-only | 300 | 35.70 ± 2.97 | 23.10 ± 0.00 | -12.50 ± 3.54 | 0.200 | "\
           "60.0 ± 14.1 | 2 |" in lines
    assert any(line.startswith("Δm (%) against the mean of 2 single-task runs") for line in lines)
    assert "- mtl-full-synthetic-300-b8-lr0.001-s2 (mtl-full, failed): RuntimeError: CUDA out "\
           "of memory" in lines


def test_csv_is_machine_readable(runs: Path, capsys: pytest.CaptureFixture[str],
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, err = run_cli(["compare", "--results", str(runs), "--format", "csv"], capsys,
                             monkeypatch)
    assert code == 0
    frame = pd.read_csv(io.StringIO(out))
    assert len(frame) == 5 and set(frame["source"]) == {"ours"}
    mtl = frame[(frame["method"] == "mtl-full") & (frame["steps"] == 300)].iloc[0]
    assert mtl["semseg_mIoU_mean"] == pytest.approx(48.3)
    assert mtl["semseg_mIoU_std"] == pytest.approx(2.9698485)
    assert mtl["normals_mean_mean"] == pytest.approx(22.05)
    assert mtl["delta_m_mean"] == pytest.approx(5.0)
    assert mtl["delta_m_std"] == pytest.approx(7.0710678)
    assert mtl["step_ms_mean"] == pytest.approx(100.0)
    assert mtl["params_m"] == pytest.approx(2.5) and mtl["n"] == 2
    assert mtl["dataset"] == "synthetic" and mtl["img_size"] == 96
    assert mtl["delta_m_reference"].startswith("mean of 2 single-task runs")
    lone = frame[frame["steps"] == 600].iloc[0]
    assert pd.isna(lone["delta_m_mean"]) and pd.isna(lone["semseg_mIoU_std"])
    assert "failed run (not averaged in): mtl-full-synthetic-300-b8-lr0.001-s2" in err


def test_failed_runs_are_listed_apart_and_never_averaged_in(
        runs: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    comparison = compare(runs)
    assert [(f.run_id, f.method, f.error) for f in comparison.failed] == [
        ("mtl-full-synthetic-300-b8-lr0.001-s2", "mtl-full", "RuntimeError: CUDA out of memory")]
    assert row_of(comparison, "mtl-full").n == 2  # its 99.0 mIoU is nowhere in the means
    code, out, _ = run_cli(["compare", "--results", str(runs)], capsys, monkeypatch)
    assert code == 0
    assert "failed runs (not averaged in):" in out
    assert "mtl-full-synthetic-300-b8-lr0.001-s2 (mtl-full, failed): RuntimeError: CUDA out of "\
           "memory" in out
    assert "48.30 ± 2.97" in out and "99.00" not in out


def test_interrupted_and_running_runs_are_listed_apart_from_failed_ones(
        runs: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    record(runs, "lora_r4", 2, 90.0, 1.0, 400_000, 5.0, status="interrupted",
           error="interrupted by SIGTERM at step 120 of 300")
    record(runs, "lora_r4", 3, 90.0, 1.0, 400_000, 5.0, status="running")
    comparison = compare(runs)
    assert row_of(comparison, "lora_r4").n == 2
    code, out, _ = run_cli(["compare", "--results", str(runs)], capsys, monkeypatch)
    assert code == 0
    lines = out.splitlines()
    headings = [i for i, line in enumerate(lines) if line.endswith(("(not averaged in):",
                                                                    "if any):", "DIR'):"))]
    assert [lines[i].split(" runs")[0] for i in headings] == ["failed", "interrupted",
                                                             "running"]
    interrupted = lines[headings[1] + 1]
    assert interrupted.strip() == ("lora_r4-synthetic-300-b8-lr0.001-s2 (lora_r4, "
                                   "interrupted): interrupted by SIGTERM at step 120 of 300")
    assert "lora_r4-synthetic-300-b8-lr0.001-s3 (lora_r4, running)" in lines[headings[2] + 1]
    assert "90.00" not in out


def test_files_that_are_not_records_are_skipped_with_one_warning_each(
        runs: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    code, _, err = run_cli(["compare", "--results", str(runs), "--format", "csv"], capsys,
                           monkeypatch)
    assert code == 0
    warnings = [line for line in err.splitlines() if line.startswith("warning: ")]
    assert warnings == [
        f"warning: skipped {runs / 'corrupt.json'}: not valid JSON (Expecting value, line 1)",
        f"warning: skipped {runs / 'foreign.json'}: not a pebench run record (no 'schema' "
        "field)",
        f"warning: skipped {runs / 'other-schema.json'}: not a pebench.run/1 record (schema: "
        "'other.tool/3')"]


def test_latex_has_booktabs_structure_and_compiles(runs: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, _ = run_cli(["compare", "--results", str(runs), "--format", "latex"], capsys,
                           monkeypatch)
    assert code == 0
    assert out.count(r"\toprule") == 1 and out.count(r"\bottomrule") == 1
    assert r"\begin{tabular}{llrrrrrr}" in out
    assert r"lora\_r4 & 300 & 43.05 $\pm$ 1.48 & 20.48 $\pm$ 0.74 & +2.50 $\pm$ 0.00" in out
    assert r"semseg mIoU $\uparrow$ & normals mean $\downarrow$ & $\Delta_m$ (\%)" in out
    body = out.split(r"\midrule")[1]
    assert body.count(r"\\") == 5  # one line per row
    assert "±" not in out and "Δ" not in out and "—" not in out  # all made LaTeX
    if shutil.which("pdflatex") is None:
        pytest.skip("pdflatex is not installed; the LaTeX structure was checked")
    document = (r"\documentclass{article}\usepackage{booktabs}\begin{document}" + out
                + r"\end{document}")
    (tmp_path / "table.tex").write_text(document)
    result = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error",
                             "table.tex"], cwd=tmp_path, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stdout[-2000:]
    assert (tmp_path / "table.pdf").stat().st_size > 1000


def test_latex_escapes_special_characters() -> None:
    assert latex_escape("a_b%c&d#e") == r"a\_b\%c\&d\#e"
    assert latex_escape("Δm ± 1") == r"$\Delta_m$ $\pm$ 1"


def test_published_rows_beside_ours_with_the_inconsistent_one_flagged(
        runs: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, _ = run_cli(["compare", "--results", str(runs), "--reference", "--format",
                            "csv"], capsys, monkeypatch)
    assert code == 0
    frame = pd.read_csv(io.StringIO(out))
    published = frame[frame["source"] == "published"]
    assert len(published) == 18 and (frame["source"] == "ours").sum() == 5
    full = published[published["method"] == "Multi-task full fine-tuning"].iloc[0]
    assert full["delta_m_mean"] == pytest.approx(2.23)  # as printed
    # (0.35/67.21 - 1.69/61.93 + 2.86/62.35 + 1.33/17.97) / 4 × 100
    assert full["delta_m_recomputed"] == pytest.approx(2.4450254, abs=1e-6)
    assert not full["delta_m_consistent"]
    assert published["delta_m_consistent"].sum() == 17
    assert published["dataset"].eq("pascal-context").all()
    polyhistor = published[published["method"] == "Polyhistor"].iloc[0]
    assert polyhistor["semseg_mIoU_mean"] == pytest.approx(70.87)
    assert polyhistor["human_parts_mIoU_mean"] == pytest.approx(59.54)
    assert polyhistor["params_m"] == pytest.approx(8.96)

    code, out, _ = run_cli(["compare", "--results", str(runs), "--reference", "--format", "md"],
                           capsys, monkeypatch)
    # Our tasks first, then the published ones we lack; no step budget for published rows.
    assert "| published | Multi-task full fine-tuning | — | 67.56 | 16.64 | 60.24 | 65.21 | "\
           "+2.23 | +2.45 † | [2] | 30.06 | — | — |" in out
    assert "† Multi-task full fine-tuning: the printed Δm (+2.23) does not recompute" in out


def test_published_numbers_are_the_reference_of_the_published_setting(tmp_path: Path) -> None:
    out = tmp_path / "pascal"
    out.mkdir()
    # Published single-task: semseg 67.21, normals 17.97. +10 % mIoU, +10 % error: Δm 0;
    # +20 % mIoU, same error: Δm +10.
    setting = {"dataset": "pascal-context", "backbone": "swin-t", "img_size": 448}
    record(out, "mtl-full", 0, 73.931, 19.767, 30_000_000, 300.0, **setting)
    record(out, "mtl-full", 1, 80.652, 17.97, 30_000_000, 300.0, **setting)
    comparison = compare(out)
    (row,) = comparison.ours
    assert row.delta_m.mean == pytest.approx(5.0)
    assert row.delta_m.std == pytest.approx(7.0710678)
    assert row.reference is not None
    assert row.reference.startswith("published Single-task full fine-tuning (")
    assert comparison.notes == []

    # The run-time lookup uses the same fallback.
    lone = record(out, "decoder-only", 0, 60.489, 17.97, 2_000_000, 100.0, **setting)
    found = finished_run_delta_m(lone, out)
    assert found is not None and found.value == pytest.approx(-5.0)
    assert found.reference.kind == "published"


def test_reference_matching_is_one_rule(runs: Path) -> None:
    """A single-task run with another batch size is no reference; one with more tasks is."""
    records = {p.stem: RunRecord.from_dict(json.loads(p.read_text()))
               for p in runs.glob("*-lr*.json")}
    mtl = records["mtl-full-synthetic-300-b8-lr0.001-s0"]
    other_batch = record(runs, "single-task", 7, 10.0, 50.0, 9_000_000, 60.0, batch_size=16)
    found = find_reference(ReferenceSetting.of(mtl), [*records.values(), other_batch])
    assert found is not None and found.values == {"semseg": 42.0, "normals": 21.0}
    assert set(found.run_ids) == {"single-task-synthetic-300-b8-lr0.001-s0",
                                  "single-task-synthetic-300-b8-lr0.001-s1"}
    only_semseg = dataclasses.replace(ReferenceSetting.of(mtl), tasks=("semseg",))
    found = find_reference(only_semseg, records.values())
    assert found is not None and found.values == {"semseg": 42.0}


def test_another_precision_is_another_setting(runs: Path) -> None:
    record(runs, "lora_r4", 2, 30.0, 30.0, 400_000, 24.0, precision="bf16")
    comparison = compare(runs)
    assert "precision" in comparison.shown_columns
    rows = sorted((r.setting["precision"], r.n) for r in comparison.ours
                  if r.method == "lora_r4")
    assert rows == [("bf16", 1), ("fp32", 2)]  # records before --precision count as fp32


def test_group_by_splits_rows_and_mixing_is_noted(runs: Path) -> None:
    record(runs, "lora_r4", 2, 42.0, 21.0, 400_000, 24.0, lr=2e-3)  # Δm 0
    comparison = compare(runs)
    lora = row_of(comparison, "lora_r4")
    assert lora.n == 3 and lora.delta_m.mean == pytest.approx(5.0 / 3)
    assert any("lora_r4" in n and "different lr (0.001, 0.002)" in n and "--group-by lr" in n
               for n in comparison.notes)
    split = compare(runs, group_by=["lr"])
    assert "lr" in split.shown_columns
    lora_rows = sorted((r.setting["lr"], r.n) for r in split.ours if r.method == "lora_r4")
    assert lora_rows == [(0.001, 2), (0.002, 1)]
    assert not any("different lr" in n for n in split.notes)
    by_rank = compare(runs, group_by=["method.rank"])
    assert by_rank.shown_columns == ["steps", "method.rank"]


def test_runs_without_a_value_count_as_different_and_print_as_none(runs: Path) -> None:
    """A run on random weights has no weights sha256: it must still be noted as mixing with the
    embedded-weights runs of its row, and be split apart by --group-by (pandas 3's astype(str)
    keeps a missing value missing, which once crashed the note and hid the column)."""
    random_init = record(runs, "lora_r4", 2, 40.0, 22.0, 400_000, 24.0)
    random_init.weights = {"source": "none", "path": None, "sha256": None}
    random_init.write(runs)
    comparison = compare(runs)
    assert any("lora_r4" in n and f"different weights_sha256 ({SHA}, none)" in n
               for n in comparison.notes)
    split = compare(runs, group_by=["weights_sha256"])
    assert "weights_sha256" in split.shown_columns
    lora_rows = sorted(str(r.setting["weights_sha256"]) for r in split.ours
                       if r.method == "lora_r4")
    assert lora_rows == ["None", SHA]


def test_plot_png_and_svg(runs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                          monkeypatch: pytest.MonkeyPatch) -> None:
    png = tmp_path / "figure.png"
    code, _, err = run_cli(["compare", "--results", str(runs), "--reference", "--plot",
                            str(png)], capsys, monkeypatch)
    assert code == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    assert "not plotted: mtl-full (dataset synthetic" in err  # no Δm for the 600-step row
    svg = tmp_path / "figure.svg"
    code, _, _ = run_cli(["compare", "--results", str(runs), "--plot", str(svg),
                          "--plot-metric", "normals", "--format", "csv"], capsys, monkeypatch)
    assert code == 0
    assert ET.parse(svg).getroot().tag.endswith("svg")


BAD_INPUTS = [
    (["--format", "xml"], "Invalid value for '--format'"),
    (["--group-by", "batch_sise"], "unknown --group-by column 'batch_sise'. Did you mean "
                                   "'batch_size'?"),
    (["--plot", "figure.jpg"], "give a file ending in .png, .svg, .pdf"),
    (["--plot", "figure.png", "--plot-metric", "depth"], "--plot-metric 'depth' is not a task"),
]


@pytest.mark.parametrize(("argv", "message"), BAD_INPUTS)
def test_bad_options_are_one_line_and_exit_2(argv: list[str], message: str, runs: Path,
                                             tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(["compare", "--results", str(runs), *argv], capsys, monkeypatch)
    errors = [line for line in err.splitlines() if not line.startswith("warning: ")]
    assert code == 2 and len(errors) == 1, err
    assert errors[0].startswith("error: ") and message in errors[0]
    assert out == "" and "Traceback" not in err
    assert not list(tmp_path.glob("figure.*"))


def test_missing_empty_and_referenceless_directories(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    code, _, err = run_cli(["compare", "--results", str(tmp_path / "nope")], capsys, monkeypatch)
    assert code == 2 and err.count("\n") == 1
    assert f"results directory '{tmp_path / 'nope'}' does not exist" in err

    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = run_cli(["compare", "--results", str(empty)], capsys, monkeypatch)
    assert code == 2 and err.count("\n") == 1
    assert "no pebench run records in" in err and "pebench run --method M" in err

    only_corrupt = tmp_path / "corrupt"
    only_corrupt.mkdir()
    (only_corrupt / "x.json").write_text("{")
    code, _, err = run_cli(["compare", "--results", str(only_corrupt)], capsys, monkeypatch)
    assert code == 2
    (only_corrupt / "y.json").write_text('{"a": 1}')
    code, _, err = run_cli(["compare", "--results", str(only_corrupt)], capsys, monkeypatch)
    assert code == 2
    (line,) = err.strip().splitlines()  # each skipped file named, with its reason
    assert line.endswith("(skipped x.json: not valid JSON (Expecting property name enclosed in "
                         "double quotes, line 1); y.json: not a pebench run record (no 'schema' "
                         "field)); make some with 'pebench run --method M --out DIR' and "
                         "compare them with 'pebench compare --results DIR'."), line
    for name in ("z1", "z2"):
        (only_corrupt / f"{name}.json").write_text("[]")
    code, _, err = run_cli(["compare", "--results", str(only_corrupt)], capsys, monkeypatch)
    (line,) = err.strip().splitlines()  # three named, the rest counted
    assert code == 2 and "z1.json: not a pebench run record (a JSON list); and 1 more" in line

    no_reference = tmp_path / "alone"
    no_reference.mkdir()
    record(no_reference, "mtl-full", 0, 45.0, 20.0, 2_500_000, 60.0)
    code, out, err = run_cli(["compare", "--results", str(no_reference), "--plot",
                              str(tmp_path / "f.png")], capsys, monkeypatch)
    assert code == 2 and out == ""
    assert "Δm is unavailable for every run" in err and "--plot-metric TASK" in err
    code, out, err = run_cli(["compare", "--results", str(no_reference)], capsys, monkeypatch)
    assert code == 0 and "note: Δm omitted for mtl-full" in out


def test_repeated_seeds_are_flagged(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    runs = tmp_path / "runs"
    first = record(runs, "decoder-only", 0, 30.0, 22.0, 220_000, 50.0)
    first.run_id += "-again"
    first.write(runs)
    code, out, _ = run_cli(["compare", "--results", str(runs), "--format", "md"], capsys,
                           monkeypatch)
    assert code == 0
    assert "averages 2 runs of only 1 distinct seed(s)" in out
