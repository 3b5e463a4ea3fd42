"""The numbers behind a relation picture: which input positions one query of an attention block relates to.

Positions are mapped between input-frame pixels (t, y, x) and a block's feature grid by the ratio of
their sizes in each axis (temporal strides included): grid cell c of an axis with ratio r covers input
[c r, (c + 1) r), its centre is at (c + 0.5) r - 0.5 in pixels, and in time at the middle frame it covers.
Only the query's attention row is computed (`attention_rows`), so this works with fused blocks.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from errors import UserError

Triple = Tuple[int, int, int]


@dataclass(frozen=True)
class GridMap:
    """Maps between input-frame pixels of a (T, H, W) clip and a (t, h, w) feature grid covering it."""

    input_shape: Triple
    grid: Triple

    def cell_of(self, point: Sequence[float]) -> Triple:
        """The grid cell that covers input position (t, y, x)."""
        return tuple(min(int(p * g / n), g - 1) for p, g, n in zip(point, self.grid, self.input_shape))

    def centre_of(self, cell: Sequence[int]) -> Tuple[int, float, float]:
        """(middle input frame, y, x pixel centre) of a grid cell."""
        (t, y, x), (_, gh, gw), (_, nh, nw) = cell, self.grid, self.input_shape
        frames = self.frames_of(t)
        return frames[len(frames) // 2], (y + 0.5) * nh / gh - 0.5, (x + 0.5) * nw / gw - 0.5

    def frames_of(self, t: int) -> range:
        """The input frames that grid time step t covers."""
        gt, nt = self.grid[0], self.input_shape[0]
        return range(t * nt // gt, max((t + 1) * nt // gt, t * nt // gt + 1))

    def flat_index(self, cell: Sequence[int]) -> int:
        return (cell[0] * self.grid[1] + cell[1]) * self.grid[2] + cell[2]

    def cell_at(self, flat: int) -> Triple:
        t, rest = divmod(int(flat), self.grid[1] * self.grid[2])
        return (t, *divmod(rest, self.grid[2]))


class _Captured(Exception):
    """Raised by the capture hook to stop the forward once the block's input is known."""


@torch.no_grad()
def block_input(model: nn.Module, block: nn.Module, clip: torch.Tensor) -> torch.Tensor:
    """The tensor that reaches `block` when `model` sees `clip` (the rest of the forward is skipped)."""
    captured: Dict[str, torch.Tensor] = {}

    def capture(module: nn.Module, args: tuple) -> None:
        captured["x"] = args[0]
        raise _Captured

    handle = block.register_forward_pre_hook(capture)
    try:
        model(clip)
    except _Captured:
        pass
    finally:
        handle.remove()
    if "x" not in captured:
        raise UserError("the chosen attention block is never reached by the model's forward")
    return captured["x"]


@torch.no_grad()
def attention_rows(block: nn.Module, x: torch.Tensor, queries: torch.Tensor,
                   chunk: int = 512) -> Tuple[torch.Tensor, Triple]:
    """Rows (Q, N_keys) of the first clip's attention for flat query positions, computed in chunks."""
    parts, key_grid = [], None
    for start in range(0, len(queries), chunk):
        rows, key_grid = block.attention_rows(x[:1], queries[start:start + chunk])
        parts.append(rows[0].float())
    return torch.cat(parts), tuple(key_grid)


def _other_frame_keys(query_map: GridMap, key_map: GridMap, query_t: int) -> torch.Tensor:
    """Boolean mask over key time steps: True where the key covers none of the query's frames."""
    own = set(query_map.frames_of(query_t))
    return torch.tensor([not own.intersection(key_map.frames_of(t)) for t in range(key_map.grid[0])])


def _key_mask(query_map: GridMap, key_map: GridMap, query_t: int) -> torch.Tensor:
    """Flat mask over keys in other frames (all keys when every key shares the query's frames)."""
    per_time = _other_frame_keys(query_map, key_map, query_t)
    if not per_time.any():
        per_time = torch.ones_like(per_time)
    return per_time.repeat_interleave(key_map.grid[1] * key_map.grid[2])


@torch.no_grad()
def most_concentrated_query(block: nn.Module, x: torch.Tensor, input_shape: Triple, top_k: int) -> int:
    """Flat grid position whose attention puts the largest mass on its top-k keys in other frames."""
    query_map = GridMap(input_shape, tuple(x.shape[2:]))
    positions = torch.arange(x.shape[2:].numel())
    rows, key_grid = attention_rows(block, x, positions)
    key_map = GridMap(input_shape, key_grid)
    scores = torch.empty(len(positions))
    for t in range(query_map.grid[0]):
        in_t = slice(query_map.flat_index((t, 0, 0)), query_map.flat_index((t + 1, 0, 0)))
        masked = rows[in_t].masked_fill(~_key_mask(query_map, key_map, t), 0.0)
        scores[in_t] = masked.topk(min(top_k, masked.shape[1]), dim=1).values.sum(1)
    return int(scores.argmax())


@dataclass
class Relation:
    """One query's attention over the clip, in grid and input-frame coordinates."""

    block: str
    query: Tuple[int, float, float]  # input frame, y, x (the query cell's centre)
    query_cell: Triple
    grid: Triple
    key_grid: Triple
    weights: torch.Tensor  # (kt, kh, kw) attention of the query over the key grid
    partners: List[Dict[str, object]]  # top-k keys in other frames, strongest first
    top_k_mass: float  # attention mass on those partners
    own_frames_mass: float  # attention mass on keys sharing the query's frames
    entropy: float  # of the whole row (negative weights as 0, normalised to sum 1), in nats

    def heat(self, input_shape: Triple) -> torch.Tensor:
        """(T, H, W) map of the weights on input pixels: each frame shows its key time step."""
        key_map = GridMap(input_shape, self.key_grid)
        spatial = F.interpolate(self.weights[:, None], size=input_shape[1:], mode="bilinear", align_corners=False)
        times = [key_map.cell_of((t, 0, 0))[0] for t in range(input_shape[0])]
        return spatial[times, 0].clamp_min(0.0)

    def to_json(self) -> Dict[str, object]:
        return {"block": self.block, "query": list(self.query), "query_cell": list(self.query_cell),
                "grid": list(self.grid), "key_grid": list(self.key_grid), "partners": self.partners,
                "top_k_mass": self.top_k_mass, "own_frames_mass": self.own_frames_mass,
                "entropy": self.entropy}


def parse_query(text: str, input_shape: Triple) -> Triple | None:
    """`auto` -> None; `t,y,x` -> a position inside the clip, else a UserError naming --query."""
    if text == "auto":
        return None
    parts = text.split(",")
    if len(parts) != 3 or not all(p.strip().lstrip("-").isdigit() for p in parts):
        raise UserError(f"--query '{text}' must be 'auto' or three integers t,y,x")
    point = tuple(int(p) for p in parts)
    if any(not 0 <= p < n for p, n in zip(point, input_shape)):
        raise UserError(f"--query {text} lies outside the clip of {input_shape[0]} frames of "
                        f"{input_shape[1]}x{input_shape[2]} pixels (t,y,x count from 0)")
    return point


@torch.no_grad()
def query_relation(model: nn.Module, name: str, block: nn.Module, clip: torch.Tensor,
                   query: Triple | None, top_k: int) -> Relation:
    """The attention of one query (input coordinates, or None for the most concentrated one) in `block`."""
    input_shape = tuple(clip.shape[2:])
    x = block_input(model, block, clip)
    query_map = GridMap(input_shape, tuple(x.shape[2:]))
    if query is None:
        flat = most_concentrated_query(block, x, input_shape, top_k)
        cell = query_map.cell_at(flat)
    else:
        cell = query_map.cell_of(query)
        flat = query_map.flat_index(cell)
    rows, key_grid = attention_rows(block, x, torch.tensor([flat]))
    row = rows[0]
    key_map = GridMap(input_shape, key_grid)
    other = row.masked_fill(~_key_mask(query_map, key_map, cell[0]), float("-inf"))
    top = other.topk(min(top_k, int(torch.isfinite(other).sum())))
    partners = []
    for rank, (weight, key) in enumerate(zip(top.values.tolist(), top.indices.tolist()), start=1):
        key_cell = key_map.cell_at(key)
        partners.append({"rank": rank, "input": list(key_map.centre_of(key_cell)), "key_cell": list(key_cell),
                         "weight": weight})
    own = ~_other_frame_keys(query_map, key_map, cell[0]).repeat_interleave(key_grid[1] * key_grid[2])
    probs = row.clamp_min(0.0) / row.clamp_min(0.0).sum().clamp_min(1e-12)
    entropy = float(-(probs * probs.clamp_min(1e-12).log()).sum())
    return Relation(name, query_map.centre_of(cell), cell, query_map.grid, key_grid, row.view(key_grid),
                    partners, float(top.values.sum()), float(row[own].sum()), entropy)
