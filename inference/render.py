"""Pictures of attention over a clip: heat-map overlays, a PNG grid with arrows, frames for a video.

Frames are uint8 (T,H,W,3) input frames; heat maps are non-negative float (T,H,W) on the same pixel
grid; points are (t, y, x) in those coordinates. Nothing here knows about models.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import List, Sequence, Tuple

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.patches import ConnectionPatch
from PIL import Image, ImageDraw

Point = Tuple[int, float, float]  # (t, y, x) in input-frame pixels
QUERY_COLOUR = "white"
PARTNER_COLOUR = "cyan"


def heat_overlay(frame: np.ndarray, heat: np.ndarray, vmax: float, alpha: float = 0.5) -> np.ndarray:
    """Blend a heat map onto an RGB frame; `vmax` maps to the hottest colour (shared across frames)."""
    norm = np.clip(heat / vmax, 0.0, 1.0) if vmax > 0 else np.zeros_like(heat)
    colours = colormaps["jet"](norm)[..., :3] * 255.0
    return (frame.astype(np.float32) * (1 - alpha) + colours * alpha).round().astype(np.uint8)


def _grid_shape(count: int, columns: int) -> Tuple[int, int]:
    cols = max(1, min(columns, count))
    return math.ceil(count / cols), cols


def save_relation_grid(path: Path, frames: np.ndarray, heat: np.ndarray, query: Point,
                       partners: Sequence[Point], columns: int = 8, title: str = "") -> Path:
    """A grid of the frames with the query's attention overlaid and arrows query -> partners."""
    count = len(frames)
    rows, cols = _grid_shape(count, columns)
    fig = Figure(figsize=(2.0 * cols, 2.0 * rows + 0.6), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    vmax = float(heat.max())
    for t, ax in enumerate(axes.flat):
        ax.axis("off")
        if t < count:
            ax.imshow(heat_overlay(frames[t], heat[t], vmax))
            ax.set_title(f"frame {t}", fontsize=8)
    query_ax = axes.flat[query[0]]
    query_ax.plot(query[2], query[1], marker="*", markersize=14, color=QUERY_COLOUR, markeredgecolor="black")
    for rank, (t, y, x) in enumerate(partners, start=1):
        axes.flat[t].plot(x, y, marker="o", markersize=7, fillstyle="none", color=PARTNER_COLOUR, markeredgewidth=2)
        axes.flat[t].annotate(str(rank), (x, y), color=PARTNER_COLOUR, fontsize=7, xytext=(4, 4),
                              textcoords="offset points")
        fig.add_artist(ConnectionPatch(xyA=(query[2], query[1]), coordsA="data", axesA=query_ax,
                                       xyB=(x, y), coordsB="data", axesB=axes.flat[t], arrowstyle="-|>", mutation_scale=12,
                                       color=PARTNER_COLOUR, linewidth=1.2, alpha=0.8))
    fig.suptitle(title, fontsize=9)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)  # a bare Figure renders with Agg: no global pyplot state
    return path


def _panel(frame: np.ndarray, heat: np.ndarray, vmax: float, size: int) -> Tuple[Image.Image, float, float]:
    """One frame with its overlay, resized to `size` pixels high; returns the image and x/y scales."""
    height, width = frame.shape[:2]
    size = 2 * (size // 2)  # even sizes keep yuv420p happy
    scaled_width = 2 * round(size * width / height / 2)
    image = Image.fromarray(heat_overlay(frame, heat, vmax)).resize((scaled_width, size), Image.BILINEAR)
    return image, scaled_width / width, size / height


def _mark(draw: ImageDraw.ImageDraw, x: float, y: float, colour: str, radius: int) -> None:
    draw.ellipse((x - radius, y - radius, x + radius, y + radius), outline=colour, width=2)


def relation_video_frames(frames: np.ndarray, heat: np.ndarray, query: Point, partners: Sequence[Point],
                          panel_size: int) -> List[np.ndarray]:
    """One picture per input frame t: the query's frame on the left, frame t on the right, both with
    the attention overlaid, and lines from the query to the partners that lie in frame t."""
    vmax = float(heat.max())
    left, sx, sy = _panel(frames[query[0]], heat[query[0]], vmax, panel_size)
    qx, qy = query[2] * sx, query[1] * sy
    pictures = []
    for t in range(len(frames)):
        right, _, _ = _panel(frames[t], heat[t], vmax, panel_size)
        canvas = Image.new("RGB", (left.width + right.width, panel_size))
        canvas.paste(left, (0, 0))
        canvas.paste(right, (left.width, 0))
        draw = ImageDraw.Draw(canvas)
        _mark(draw, qx, qy, QUERY_COLOUR, 5)
        for pt, py, px in partners:
            if pt == t:
                end = (left.width + px * sx, py * sy)
                draw.line(((qx, qy), end), fill=PARTNER_COLOUR, width=2)
                _mark(draw, end[0], end[1], PARTNER_COLOUR, 4)
        draw.text((4, 2), f"query frame {query[0]}", fill=QUERY_COLOUR)
        draw.text((left.width + 4, 2), f"frame {t}", fill=QUERY_COLOUR)
        pictures.append(np.asarray(canvas))
    return pictures


def save_map_grid(path: Path, frames: np.ndarray, frame_labels: Sequence[str],
                  maps: Sequence[Tuple[str, np.ndarray, float]], title: str = "") -> Path:
    """Rows of heat maps over time: each `(label, (T,H,W) map, vmax)` row is overlaid on the T frames."""
    count = len(frames)
    fig = Figure(figsize=(1.6 * count + 0.4, 1.6 * len(maps) + 0.6), layout="constrained")
    axes = fig.subplots(len(maps), count, squeeze=False)
    for row, (label, heat, vmax) in enumerate(maps):
        for t in range(count):
            ax = axes[row, t]
            ax.imshow(heat_overlay(frames[t], heat[t], vmax))
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(frame_labels[t], fontsize=7)
        axes[row, 0].set_ylabel(label, fontsize=7)
    fig.suptitle(title, fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)  # a bare Figure renders with Agg: no global pyplot state
    return path
