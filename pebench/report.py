"""A Comparison as text: a terminal table, Markdown, CSV or a LaTeX (booktabs) table.

Every format shows the same columns from one column list, so a number never means one thing
in the terminal and another in the paper. CSV keeps mean and std apart for machines; the
others write "mean ± std" and leave the ± out for a single seed.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import pandas as pd
from rich.table import Table

from pebench.compare import Comparison, Row, Stat
from pebench.errors import PebenchError

FORMATS = ("table", "md", "csv", "latex")
Kind = Literal["text", "metric", "delta", "params", "ms", "count", "recomputed"]
MISSING = "—"
DAGGER = "†"


@dataclass(frozen=True)
class Column:
    key: str  # CSV name
    header: str  # terminal and Markdown header
    latex: str  # LaTeX header (already escaped)
    kind: Kind
    value: Callable[[Row], Any]


def columns(comparison: Comparison) -> list[Column]:
    """The table's columns: what identifies a row, then what it measures."""
    cols: list[Column] = []
    if comparison.with_published:
        cols.append(Column("source", "source", "source", "text", lambda r: r.source))
    cols.append(Column("method", "method", "method", "text", lambda r: r.method))
    for name in comparison.shown_columns:
        cols.append(Column(name, name, latex_escape(name), "text",
                           lambda r, name=name: r.setting.get(name)))
    for task in comparison.tasks:
        spec = comparison.primary_metrics[task]
        tex_arrow = r"$\uparrow$" if spec.higher_is_better else r"$\downarrow$"
        label = f"{task} {spec.name}"
        cols.append(Column(f"{task}_{spec.name}", f"{label} {spec.arrow}",
                           f"{latex_escape(label)} {tex_arrow}", "metric",
                           lambda r, task=task: r.metrics.get(task)))
    cols.append(Column("delta_m", "Δm (%) ↑", r"$\Delta_m$ (\%) $\uparrow$", "delta",
                       lambda r: r.delta_m))
    if comparison.with_published:
        cols.append(Column("delta_m_recomputed", "Δm recomputed",
                           r"$\Delta_m$ recomputed", "recomputed", lambda r: r))
    if len(comparison.references) > 1:
        cols.append(Column("ref", "Δm ref", r"$\Delta_m$ ref.", "text",
                           lambda r: _reference_mark(comparison, r)))
    cols.append(Column("params_m", "params (M)", "params (M)", "params", lambda r: r.params_m))
    cols.append(Column("step_ms", "ms/step", "ms/step", "ms", lambda r: r.step_ms))
    cols.append(Column("n", "n", "$n$", "count", lambda r: r.n))
    return cols


def caption_lines(comparison: Comparison) -> list[str]:
    """Which reference Δm is against, and the mark on an inconsistent published row."""
    refs = comparison.references
    if not refs:
        lines = ["Δm omitted: no reference for any row (see the notes)."]
    elif len(refs) == 1:
        lines = [f"Δm (%) against the {refs[0]}."]
    else:
        lines = ["Δm (%) against:", *(f"[{i}] the {label}{';' if i < len(refs) else '.'}"
                                       for i, label in enumerate(refs, 1))]
    for row in comparison.rows:
        if row.consistent is False and row.delta_m is not None:
            lines.append(f"{DAGGER} {row.method}: the printed Δm ({row.delta_m.mean:+.2f}) does "
                         f"not recompute from its metrics ({row.delta_m_recomputed:+.2f}); one of "
                         "its published values is unverified.")
    return lines


def failed_lines(comparison: Comparison, status: str | None = None) -> list[str]:
    """One line per run that did not complete (of ``status`` only, if given)."""
    return [f"{f.run_id} ({f.method}, {f.status}): {f.error}" for f in comparison.failed
            if status is None or f.status == status]


UNFINISHED_HEADINGS = {
    "failed": "failed runs (not averaged in):",
    "interrupted": "interrupted runs (not averaged in; resume each with 'pebench run --resume "
                   "RUN --out DIR'):",
    "running": "running runs, or runs whose process was killed (not averaged in; a killed run "
               "resumes from its last saved state, if any):",
}


def unfinished_groups(comparison: Comparison) -> list[tuple[str, list[str]]]:
    """The runs that are not completed, under one heading per status."""
    groups = []
    for status, heading in UNFINISHED_HEADINGS.items():
        lines = failed_lines(comparison, status)
        if lines:
            groups.append((heading, lines))
    return groups


def render(comparison: Comparison, fmt: str) -> str:
    """The table in ``md``, ``csv`` or ``latex``; ``table`` is drawn by ``rich_table``."""
    renderers = {"md": render_markdown, "csv": render_csv, "latex": render_latex}
    if fmt not in renderers:
        raise PebenchError(f"unknown format '{fmt}'; valid: {', '.join(FORMATS)}.")
    return renderers[fmt](comparison)


def rich_table(comparison: Comparison) -> Table:
    cols = columns(comparison)
    table = Table(title=f"runs in {comparison.directory}", caption="\n".join(
        caption_lines(comparison)), caption_justify="left")
    for col in cols:
        table.add_column(col.header, justify="left" if col.kind == "text" else "right")
    for row in comparison.rows:
        style = "dim" if row.source == "published" else None
        table.add_row(*(_text(col, row) for col in cols), style=style)
    return table


def render_markdown(comparison: Comparison) -> str:
    cols = columns(comparison)
    lines = ["| " + " | ".join(c.header for c in cols) + " |",
             "| " + " | ".join("---" if c.kind == "text" else "---:" for c in cols) + " |"]
    for row in comparison.rows:
        lines.append("| " + " | ".join(_text(c, row).replace("|", r"\|") for c in cols) + " |")
    lines += ["", *caption_lines(comparison)]
    if comparison.notes:
        lines += ["", *(f"- {note}" for note in comparison.notes)]
    for heading, group in unfinished_groups(comparison):
        lines += ["", f"**{heading[0].upper()}{heading[1:]}**", "",
                  *(f"- {line}" for line in group)]
    return "\n".join(lines) + "\n"


def render_csv(comparison: Comparison) -> str:
    """One row per table row; every group column, mean and std apart, reference spelled out."""
    records = []
    for row in comparison.rows:
        out: dict[str, Any] = {"source": row.source, "method": row.method}
        out.update({c: row.setting.get(c) for c in comparison.group_columns})
        for col in columns(comparison):
            if col.kind in ("metric", "delta", "ms"):
                stat = col.value(row)
                out[f"{col.key}_mean"] = stat.mean if stat else None
                out[f"{col.key}_std"] = stat.std if stat else None
        out["delta_m_reference"] = row.reference
        if comparison.with_published:
            out["delta_m_recomputed"] = row.delta_m_recomputed
            out["delta_m_consistent"] = row.consistent
        out["params_m"] = row.params_m
        out["n"] = row.n
        records.append(out)
    frame = pd.DataFrame(records)
    for name in frame.columns:  # keep integers integers where a published row leaves a gap
        values = [r[name] for r in records if r.get(name) is not None]
        if values and all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            frame[name] = pd.array([r.get(name) for r in records], dtype="Int64")
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False, lineterminator="\n")
    return buffer.getvalue()


def render_latex(comparison: Comparison) -> str:
    """A ``table`` environment for ``\\input``; needs ``\\usepackage{booktabs}``."""
    cols = columns(comparison)
    spec = "".join("l" if c.kind == "text" else "r" for c in cols)
    lines = [f"% pebench compare --results {latex_escape(str(comparison.directory))}",
             r"% needs \usepackage{booktabs}",
             r"\begin{table}[t]", r"  \centering",
             r"  \caption{" + latex_escape(" ".join(caption_lines(comparison))) + "}",
             r"  \label{tab:pebench-compare}", r"  \begin{tabular}{" + spec + "}",
             r"    \toprule", "    " + " & ".join(c.latex for c in cols) + r" \\", r"    \midrule"]
    previous = None
    for row in comparison.rows:
        if previous is not None and row.source != previous:
            lines.append(r"    \midrule")
        previous = row.source
        cells = [_latex_cell(c, row) for c in cols]
        lines.append("    " + " & ".join(cells) + r" \\")
    lines += [r"    \bottomrule", r"  \end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def latex_escape(text: str) -> str:
    """Text safe in LaTeX: its special characters escaped, the symbols tables use as math."""
    parts = ("".join(_LATEX.get(ch, ch) for ch in part) for part in text.split("Δm"))
    return r"$\Delta_m$".join(parts)


_LATEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
          "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
          "^": r"\textasciicircum{}", "Δ": r"$\Delta$", "±": r"$\pm$", "↑": r"$\uparrow$",
          "↓": r"$\downarrow$", "—": "---", "–": "--", "†": r"$^\dagger$", "≠": r"$\neq$",
          "°": r"$^\circ$", "×": r"$\times$", "≤": r"$\leq$", "≥": r"$\geq$"}


def _latex_cell(col: Column, row: Row) -> str:
    text = _text(col, row)
    return "--" if text == MISSING else latex_escape(text)


def _text(col: Column, row: Row) -> str:
    value = col.value(row)
    if col.kind == "recomputed":
        if value.delta_m_recomputed is None:
            return MISSING
        mark = f" {DAGGER}" if value.consistent is False else ""
        return f"{value.delta_m_recomputed:+.2f}{mark}"
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    if col.kind == "metric":
        return _stat(value, "{:.2f}", "{:.2f}")
    if col.kind == "delta":
        return _stat(value, "{:+.2f}", "{:.2f}")
    if col.kind == "ms":
        return _stat(value, "{:.1f}", "{:.1f}")
    if col.kind == "params":
        return f"{value:#.3g}" if value < 1 else f"{value:.2f}"
    return str(value)


def _stat(stat: Stat, mean_format: str, std_format: str) -> str:
    mean = mean_format.format(stat.mean)
    if mean.lstrip("+-").strip("0.") == "":  # a mean that rounds to zero is not "-0.00"
        mean = mean_format.format(0.0)
    return mean if stat.std is None else f"{mean} ± {std_format.format(stat.std)}"


def _reference_mark(comparison: Comparison, row: Row) -> str | None:
    if row.reference is None:
        return None
    return f"[{comparison.references.index(row.reference) + 1}]"
