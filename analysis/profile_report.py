"""The profile's rows as a Markdown table and a PNG bar chart (measured vs predicted activation bytes)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Sequence

import numpy as np
from matplotlib.figure import Figure

from analysis.budget import format_bytes

Row = Dict[str, Any]
GIB = 2**30
# the fields that tell rows apart, in the order a label names them
CASE_FIELDS = ("placement", "frames", "size", "batch", "implementation", "subsample")


def varying_fields(rows: Sequence[Row]) -> List[str]:
    """The case fields whose value differs between rows (the others go in the caption)."""
    return [name for name in CASE_FIELDS if len({str(row[name]) for row in rows}) > 1]


def row_label(row: Row, fields: Sequence[str], sep: str = " ") -> str:
    parts = []
    for name in fields:
        value = row[name]
        if name == "subsample":
            parts.append("sub" if value else "nosub")
        elif name in ("frames", "size", "batch"):
            parts.append(f"{name[0]}{value}")
        else:
            parts.append(str(value))
    return sep.join(parts)


def _fits(row: Row) -> str:
    if row["fits_budget"] is None:
        return "-"
    return f"{'yes' if row['fits_budget'] else 'NO'} (max batch {row['max_fitting_batch']})"


def markdown_table(rows: Sequence[Row], budget: int | None) -> str:
    """A Markdown table of every row, with the worst prediction error underneath."""
    header = ["placement", "frames", "size", "batch", "impl.", "subsample", "params", "GFLOPs/clip",
              "activations (measured)", "predicted", "error", "NL affinity", "peak (CUDA)", "fits budget"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [row["placement"], row["frames"], row["size"], row["batch"], row["implementation"],
                 "-" if row["subsample"] is None else ("yes" if row["subsample"] else "no"),
                 f"{row['params'] / 1e6:.2f} M", f"{row['gflops']:.2f}", format_bytes(row["activation_bytes"]),
                 format_bytes(row["predicted_activation_bytes"]), f"{100 * row['prediction_error']:+.2f}%",
                 format_bytes(row["nonlocal_affinity_bytes"]), format_bytes(row["peak_bytes"]), _fits(row)]
        lines.append("| " + " | ".join(str(cell) for cell in cells) + " |")
    worst = max(rows, key=lambda row: abs(row["prediction_error"]))
    lines.append("")
    lines.append(f"Worst prediction error: {100 * abs(worst['prediction_error']):.2f}% "
                 f"({row_label(worst, CASE_FIELDS)}). Budget: {format_bytes(budget) if budget else 'none'}.")
    return "\n".join(lines) + "\n"


def bar_chart(path: Path, rows: Sequence[Row], budget: int | None, title: str) -> Path:
    """Bars of measured activation GiB per row (affinity share hatched), predicted as a dot, budget line."""
    fields = varying_fields(rows) or ["placement"]
    labels = [row_label(row, fields, "\n") for row in rows]
    measured = np.array([row["activation_bytes"] for row in rows]) / GIB
    predicted = np.array([row["predicted_activation_bytes"] for row in rows]) / GIB
    affinity = np.array([row["nonlocal_affinity_bytes"] for row in rows]) / GIB
    x = np.arange(len(rows))
    fig = Figure(figsize=(max(6.0, 0.75 * len(rows) + 2), 4.8))
    ax = fig.subplots()
    ax.bar(x, measured - affinity, color="tab:blue", label="activations (measured)")
    ax.bar(x, affinity, bottom=measured - affinity, color="tab:red", hatch="//", label="of which NL affinity (analytic)")
    ax.plot(x, predicted, "k.", markersize=9, label="predicted (analytic)")
    if budget:
        ax.axhline(budget / GIB, color="tab:orange", linestyle="--", label=f"budget {format_bytes(budget)}")
    ax.set_xticks(x, labels, fontsize=7)
    ax.set_ylabel("GiB saved for backward")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path
