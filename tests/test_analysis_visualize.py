"""Relation visualization: coordinate mapping, a constructed attention with a known answer, real files out."""
import json
import math
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from analysis.relations.relations import GridMap, parse_query, query_relation
from analysis.relations.visualize import check_options
import run
from engine.checkpoint import FORMAT, config_to_container, save_checkpoint
from configs.compose import load_config
from errors import UserError
from models.attention.non_local import NonLocalBlock
from models.build import build_model
from tests.conftest import ROOT

# the stem pools 2 frames x 4 x 4 pixels into one cell: a 4x8x8 clip becomes a 2x2x2 grid
STRIDE = (2, 4, 4)
CLIP = (4, 8, 8)


def test_grid_map_round_trip_with_temporal_stride():
    grid = GridMap((8, 64, 64), (2, 4, 4))
    assert grid.cell_of((5, 20, 63)) == (1, 1, 3)
    assert grid.centre_of((1, 1, 3)) == (6, 23.5, 55.5)
    assert grid.frames_of(1) == range(4, 8)
    assert grid.cell_at(grid.flat_index((1, 2, 3))) == (1, 2, 3)


class _PositionModel(nn.Module):
    """Average-pool stem + one non-local block whose theta and phi are the identity: the attention of a
    cell is softmax over keys of <feature_q, feature_k>, so the clip's colours decide who attends to whom."""

    def __init__(self, implementation: str):
        super().__init__()
        self.stem = nn.AvgPool3d(STRIDE)
        self.block = NonLocalBlock(3, reduction=1, subsample=False, implementation=implementation, scale=False)
        with torch.no_grad():
            for conv in (self.block.theta, self.block.phi):
                conv.weight.copy_(torch.eye(3).view(3, 3, 1, 1, 1))
                conv.bias.zero_()

    def forward(self, x):
        return self.block(self.stem(x)).mean(dim=(2, 3, 4))

    def attention_blocks(self):
        return {"res4.0.nonlocal": self.block}


def _angle_clip(angles: dict, amplitude: dict) -> torch.Tensor:
    """A (1,3,T,H,W) clip constant over each grid cell: feature (cos a, sin a, 0) * amplitude."""
    clip = torch.zeros(1, 3, *CLIP)
    for cell, angle in angles.items():
        t, y, x = cell
        region = (slice(None), slice(t * 2, t * 2 + 2), slice(y * 4, y * 4 + 4), slice(x * 4, x * 4 + 4))
        value = torch.tensor([math.cos(angle), math.sin(angle), 0.0]) * amplitude.get(cell, 1.0)
        clip[0][region] = value.view(3, 1, 1, 1)
    return clip


# the query cell (0,1,0) and its twin (1,0,1) in the other time step share an angle; the other cells of
# time step 1 are turned by 90, 180 and 270 degrees and as bright as the twin, so only the angle makes
# the twin the query's one strong partner in another frame. The dim cells of time step 0 attend
# almost uniformly, the bright ones mostly to themselves: the query and its twin are the most
# concentrated on another frame
QUERY, TWIN = (0, 1, 0), (1, 0, 1)
LATER = [(1, 0, 0), (1, 1, 0), (1, 1, 1)]
ANGLES = {QUERY: 0.3, TWIN: 0.3, **{cell: 0.3 + (i + 1) * math.pi / 2 for i, cell in enumerate(LATER)},
          (0, 0, 0): 0.3 + math.pi, (0, 0, 1): 0.3 + math.pi, (0, 1, 1): 0.3 + math.pi}
BRIGHT = {QUERY: 3.0, **{cell: 3.0 if cell[0] == 1 else 0.2 for cell in ANGLES if cell != QUERY}}


@pytest.mark.parametrize("implementation", ["reference", "fused"])
def test_top_partner_is_where_the_constructed_attention_puts_it(implementation):
    model = _PositionModel(implementation).eval()
    clip = _angle_clip(ANGLES, BRIGHT)
    query_pixel = (1, 5, 2)  # frame 1, row 5, column 2: inside cell (0, 1, 0)
    relation = query_relation(model, "res4.0.nonlocal", model.block, clip, query_pixel, top_k=2)
    assert relation.query_cell == QUERY and relation.grid == (2, 2, 2)
    best = relation.partners[0]
    assert best["key_cell"] == list(TWIN)
    t, y, x = best["input"]
    assert t in range(2, 4) and 0 <= y < 4 and 4 <= x < 8  # the twin's pixels: frames 2-3, top right
    assert best["weight"] > 0.9 * (1 - relation.own_frames_mass)  # nearly all long-range mass
    assert all(p["key_cell"][0] == 1 for p in relation.partners)  # partners only in other frames


def test_auto_query_picks_the_most_concentrated_position():
    model = _PositionModel("fused").eval()
    clip = _angle_clip(ANGLES, BRIGHT)
    relation = query_relation(model, "res4.0.nonlocal", model.block, clip, None, top_k=1)
    assert relation.query_cell in (QUERY, TWIN)


@pytest.mark.parametrize("key, value", [("top_k", 0), ("fps", 0.0), ("panel_size", 0)])
def test_bad_visualize_option_names_the_key(key, value):
    with pytest.raises(UserError, match=f"visualize.{key}"):
        check_options(load_config(None, [f"visualize.{key}={value}"]).visualize)


@pytest.mark.parametrize("text", ["1,2", "a,b,c", "9,0,0", "0,0,8"])
def test_bad_query_names_the_option(text):
    with pytest.raises(UserError, match="--query"):
        parse_query(text, CLIP)


def _tiny_checkpoint(tmp_path, overrides=()):
    """A real checkpoint file of the tiny non-local I3D with the pyramid head (untrained weights)."""
    cfg = load_config(str(ROOT / "configs" / "model" / "i3d_tiny_nl_iaa.yaml"),
                      ["data.sampling.num_frames=8", "data.transforms.test_scale=64", "data.transforms.crop_size=56",
                       "logger.wandb.mode=disabled", *overrides])
    torch.manual_seed(0)
    model = build_model(cfg.model, 3)
    path = tmp_path / "tiny.pt"
    save_checkpoint({"format": FORMAT, "model": model.state_dict(), "config": config_to_container(cfg),
                     "labels": ["a", "b", "c"], "step": 0}, path)
    return path, cfg


def _decoded_frames(path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def visualize_command(checkpoint, video, out, *extra):
    """`run.py visualize` in this process; the files it wrote, keyed as `visualize` returns them."""
    assert run.main(["visualize", f"checkpoint={checkpoint}", "--video", str(video), "--out", str(out), *extra]) == 0
    names = {"png": "relations.png", "mp4": "relations.mp4", "json": "relations.json", "pyramid_maps": "pyramid_maps.png"}
    return {key: str(Path(out) / name) for key, name in names.items() if (Path(out) / name).is_file()}


def test_visualize_writes_valid_files_from_a_real_video(tmp_path, clips_dir):
    checkpoint, cfg = _tiny_checkpoint(tmp_path)
    files = visualize_command(checkpoint, clips_dir / "hmdb51_golf.avi", tmp_path / "vis", "--query", "3,20,30")
    for key in ("png", "pyramid_maps"):
        with Image.open(files[key]) as image:
            image.verify()
    assert _decoded_frames(files["mp4"]) == cfg.data.sampling.num_frames
    numbers = json.loads(Path(files["json"]).read_text())
    assert numbers["block"] == "res4.1.nonlocal" and numbers["frames"] == [8, 56, 56]
    # res4 sees the 8 frames as 2 time steps of 4, its subsampled keys as 2 x 2 x 2: frame 3 is in step 0,
    # so the partners in other frames are the 4 keys of step 1, frames 4-7
    assert numbers["query_cell"][0] == 0 and len(numbers["partners"]) == 4
    assert all(4 <= p["input"][0] < 8 for p in numbers["partners"])


@pytest.mark.slow
def test_visualize_fused_block_by_name_with_auto_query_and_wandb(tmp_path, clips_dir):
    checkpoint, _ = _tiny_checkpoint(tmp_path, ["model.attention.0.implementation=fused"])
    files = visualize_command(checkpoint, clips_dir / "hmdb51_golf.avi", tmp_path / "vis", "--block", "res3.1.nonlocal",
                              "logger.wandb.mode=offline", "visualize.top_k=3")
    numbers = json.loads(Path(files["json"]).read_text())
    assert numbers["block"] == "res3.1.nonlocal" and numbers["requested_query"] == "auto"
    assert len(numbers["partners"]) == 3
    images = {p.name.split("_")[0] for p in (tmp_path / "vis" / "wandb").glob("offline-run-*/files/media/images/*/*.png")}
    assert images == {"relations", "pyramid"}
    with pytest.raises(UserError, match="res9.0.nonlocal"):
        visualize_command(checkpoint, clips_dir / "hmdb51_golf.avi", tmp_path / "vis", "--block", "res9.0.nonlocal")


def test_visualize_danet_position_attention(tmp_path, clips_dir):
    checkpoint, _ = _tiny_checkpoint(tmp_path, ["model.attention=[{type: pam, stages: [4], blocks: [1]}]",
                                                "visualize.iaa_maps=false"])
    files = visualize_command(checkpoint, clips_dir / "tai_chi_k400.mp4", tmp_path / "vis")
    numbers = json.loads(Path(files["json"]).read_text())
    assert numbers["block"] == "res4.1.pam" and numbers["key_grid"] == numbers["grid"]  # PAM keeps every key
    assert "pyramid_maps" not in files and _decoded_frames(files["mp4"]) == 8
