"""The profile's rows as a Markdown table and a PNG bar chart (measured vs predicted activation bytes)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Sequence

import numpy as np
from matplotlib.figure import Figure

from analysis.profiling.budget import format_bytes

Row = Dict[str, Any]
GIB = 2**30
# the fields that tell rows apart, in the order a label names them
CASE_FIELDS = ("placement", "frames", "size", "batch", "implementation", "subsample")


def varying_fields(rows: Sequence[Row]) -> List[str]:
    """The case fields whose value differs between rows (the others go in the caption)."""
    return [name for name in CASE_FIELDS if len({str(row[name]) for row in rows}) > 1]


def row_label(row: Row, fields: Sequence[str]) -> str:
    parts = []
    for name in fields:
        value = row[name]
        if value in (None, "-"):  # subsample / implementation of a placement without non-local blocks
            continue
        if name == "subsample":
            parts.append("sub" if value else "nosub")
        elif name in ("frames", "size", "batch"):
            parts.append(f"{name[0]}{value}")
        else:
            parts.append(str(value))
    return " ".join(parts)


def _fits(row: Row) -> str:
    if row["fits_budget"] is None:
        return "-"
    return f"{'yes' if row['fits_budget'] else 'NO'} (max batch {row['max_fitting_batch']})"


def _peak(row: Row) -> str:
    if row["peak_bytes"] is None:
        return "-"
    return (f"{format_bytes(row['peak_bytes'])} / {format_bytes(row['predicted_peak_bytes'])} "
            f"({100 * row['peak_error']:+.1f}%)")


def markdown_table(rows: Sequence[Row], budget: int | None) -> str:
    """A Markdown table of every row, with the worst prediction error underneath."""
    header = ["placement", "frames", "size", "batch", "impl.", "subsample", "params", "GFLOPs/clip",
              "activations (measured)", "predicted", "error", "NL affinity", "peak (CUDA) / predicted (error)", "fits budget"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [row["placement"], row["frames"], row["size"], row["batch"], row["implementation"],
                 "-" if row["subsample"] is None else ("yes" if row["subsample"] else "no"),
                 f"{row['params'] / 1e6:.2f} M", f"{row['gflops']:.2f}", format_bytes(row["activation_bytes"]),
                 format_bytes(row["predicted_activation_bytes"]), f"{100 * row['prediction_error']:+.2f}%",
                 format_bytes(row["nonlocal_affinity_bytes"]), _peak(row), _fits(row)]
        lines.append("| " + " | ".join(str(cell) for cell in cells) + " |")
    worst = max(rows, key=lambda row: abs(row["prediction_error"]))
    lines.append("")
    lines.append(f"Worst prediction error: {100 * abs(worst['prediction_error']):.2f}% "
                 f"({row_label(worst, CASE_FIELDS)}). Budget: {format_bytes(budget) if budget else 'none'}.")
    return "\n".join(lines) + "\n"


def _unit(largest: float) -> tuple[str, float]:
    return ("GiB", GIB) if largest >= GIB else ("MiB", 2**20)


def bar_chart(path: Path, rows: Sequence[Row], budget: int | None, title: str) -> Path:
    """Stacked bars per row: parameter state, measured activations with their non-local affinity
    share hatched; the analytic prediction as a dot, a CUDA peak as a cross, the budget as a line.
    With a budget, a second panel shows the largest batch that fits it."""
    fields = varying_fields(rows) or ["placement"]
    labels = [row_label(row, fields) for row in rows]
    state = np.array([row["state_bytes"] for row in rows], dtype=float)
    measured = np.array([row["activation_bytes"] for row in rows], dtype=float)
    affinity = np.array([row["nonlocal_affinity_bytes"] for row in rows], dtype=float)
    predicted = np.array([row["predicted_activation_bytes"] for row in rows], dtype=float)
    peaks = [(i, row["peak_bytes"]) for i, row in enumerate(rows) if row["peak_bytes"] is not None]
    unit, scale = _unit(max([*(state + measured), *(p for _, p in peaks), budget or 0]))
    x = np.arange(len(rows))
    panels = 2 if budget else 1
    fig = Figure(figsize=(max(6.0, 0.42 * len(rows) + 2), 3.2 * panels + 2.0), layout="constrained")
    axes = fig.subplots(panels, 1, sharex=True, squeeze=False)[:, 0]
    ax = axes[0]
    ax.bar(x, state / scale, color="0.75", label="weights + grads + optimizer state")
    ax.bar(x, (measured - affinity) / scale, bottom=state / scale, color="tab:blue", label="activations (measured)")
    ax.bar(x, affinity / scale, bottom=(state + measured - affinity) / scale, color="tab:red", hatch="//",
           label="of which non-local affinity")
    ax.plot(x, (state + predicted) / scale, "k.", markersize=8, label="predicted (analytic)")
    if peaks:
        ax.plot([i for i, _ in peaks], [p / scale for _, p in peaks], "kx", label="CUDA peak (fwd + bwd)")
    if budget:
        ax.axhline(budget / scale, color="tab:orange", linestyle="--", label=f"budget {format_bytes(budget)}")
    ax.set_ylabel(f"{unit} per training step")
    shared = [name for name in ("frames", "size", "batch") if name not in fields]
    ax.set_title(f"{title}; {', '.join(f'{name} {rows[0][name]}' for name in shared)}" if shared else title,
                 fontsize=10)
    ax.legend(fontsize=7)
    if budget:
        batches = [row["max_fitting_batch"] for row in rows]
        axes[1].bar(x, batches, color=["tab:green" if row["fits_budget"] else "tab:orange" for row in rows])
        for i, value in enumerate(batches):
            axes[1].annotate(str(value), (i, value), ha="center", va="bottom", fontsize=6)
        axes[1].set_ylabel(f"largest batch in {format_bytes(budget)}")
    axes[-1].set_xticks(x, labels, fontsize=7, rotation=60, ha="right")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path
