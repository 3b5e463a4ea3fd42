"""Long-range frame relations of a trained model's attention block (behind `run.py visualize`).

The clip is decoded and sampled as the model's data config says (test-time centre clip and crop), the chosen block's attention row for one
query position is computed alone (`attention_rows`, so fused blocks work), and written as
  DIR/relations.png   the sampled frames with the attention overlaid and arrows to the top-k partners
  DIR/relations.mp4   one video frame per sampled frame: the query's frame beside frame t
  DIR/relations.json  the numbers (query, partners, weights, masses) and the written paths
  DIR/pyramid_maps.png  the pyramid head's K attention maps over scales and time (IAA models only)
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Tuple

import numpy as np
import torch
from torch import nn

from inference.clip_input import load_clip
from analysis.relations.pyramid_maps import find_pyramid_head, pyramid_maps
from analysis.relations.relations import Relation, parse_query, query_relation
from inference.render import relation_video_frames, save_map_grid, save_relation_grid
from analysis.relations.config import VisualizeConfig
from errors import UserError
from video.config import DataConfig
from video.encode import write_video


def check_options(options: Any) -> None:
    """Raise UserError naming the `visualize.*` key with an impossible value."""
    for key in ("top_k", "columns", "panel_size"):
        if getattr(options, key) < 1:
            raise UserError(f"visualize.{key}={getattr(options, key)}: must be at least 1")
    if options.fps <= 0:
        raise UserError(f"visualize.fps={options.fps}: must be positive")


def choose_block(model: nn.Module, name: str | None) -> Tuple[str, nn.Module]:
    """The named attention block, or by default the last non-local block (else the last DANet PAM)."""
    blocks = {n: b for n, b in model.attention_blocks().items() if hasattr(b, "attention_rows")}
    if not blocks:
        placed = ", ".join(model.attention_blocks()) or "none"
        raise UserError(f"the model has no non-local or position-attention block to visualize (placed: {placed})")
    if name is None:
        name = ([n for n in blocks if n.endswith(".nonlocal")] or list(blocks))[-1]
    if name not in blocks:
        raise UserError(f"--block '{name}' is not one of the model's attention blocks: {', '.join(blocks)}")
    return name, blocks[name]


def _relation_files(out_dir: Path, frames: np.ndarray, relation: Relation, options: VisualizeConfig) -> Dict[str, str]:
    input_shape = frames.shape[:3]
    heat = relation.heat(input_shape).numpy()
    partners = [tuple(p["input"]) for p in relation.partners]
    title = (f"{relation.block}: query frame {relation.query[0]} at (y={relation.query[1]:.0f}, "
             f"x={relation.query[2]:.0f}); top-{len(partners)} partners in other frames hold "
             f"{100 * relation.top_k_mass:.1f}% of its attention")
    png = save_relation_grid(out_dir / "relations.png", frames, heat, relation.query, partners,
                             options.columns, title)
    pictures = relation_video_frames(frames, heat, relation.query, partners, options.panel_size)
    mp4 = out_dir / "relations.mp4"
    write_video(mp4, pictures, options.fps)
    return {"png": str(png), "mp4": str(mp4)}


def _pyramid_file(out_dir: Path, model: nn.Module, clip: torch.Tensor, frames: np.ndarray) -> Dict[str, str]:
    head = find_pyramid_head(model)
    if head is None:
        return {}
    maps = pyramid_maps(model, head, clip)
    shape = frames.shape[:3]
    rows = [(label, heat.numpy(), vmax) for label, heat, vmax in maps.rows(shape)]
    picked = maps.frames(shape)
    path = save_map_grid(out_dir / "pyramid_maps.png", frames[picked], [f"frame {t}" for t in picked], rows,
                         f"pyramid head: {maps.maps.shape[0]} maps,\nsoftmax over scales x time x positions")
    return {"pyramid_maps": str(path)}


def visualize(model: nn.Module, data: DataConfig, labels: List[str], video: str, out_dir: str | Path,
              options: VisualizeConfig, block: str | None = None, query: str = "auto",
              source: str = "") -> Dict[str, str]:
    """Write the relation picture, video and numbers of one query of one block of `model` (eval mode) on
    `video` decoded as `data` says; returns the paths. `source` (the checkpoint) is recorded in the JSON."""
    check_options(options)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    frames, clip = load_clip(video, data)
    name, chosen = choose_block(model, block)
    relation = query_relation(model, name, chosen, clip, parse_query(query, frames.shape[:3]), options.top_k)
    files = _relation_files(out_dir, frames, relation, options)
    if options.iaa_maps:
        files.update(_pyramid_file(out_dir, model, clip, frames))
    with torch.no_grad():
        probabilities = model(clip).softmax(-1)[0]
    numbers = {"checkpoint": source, "video": str(video), "requested_query": query,
               "frames": list(frames.shape[:3]), "prediction": labels[int(probabilities.argmax())],
               "confidence": float(probabilities.max()), **relation.to_json()}
    json_path = out_dir / "relations.json"
    files["json"] = str(json_path)
    json_path.write_text(json.dumps({**numbers, "files": files}, indent=2) + "\n")
    return files
