"""The interaction-aware pyramid head's K attention maps, laid out over scales and time for drawing."""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from analysis.relations.relations import GridMap, Triple
from models.iaa import PyramidAttentionHead


@dataclass
class PyramidMaps:
    """maps (K, scales, t, h, w) of the first clip: softmax over all scales and positions together."""

    stages: List[str]
    grid: Triple
    maps: torch.Tensor

    def rows(self, input_shape: Triple) -> List[Tuple[str, torch.Tensor, float]]:
        """One `(label, (grid t, H, W) heat, vmax)` per map and scale, upsampled to input pixels; all
        scales of a map share its maximum, so their colours compare like the softmax weights do."""
        out = []
        for k in range(self.maps.shape[0]):
            vmax = float(self.maps[k].max())
            for s, stage in enumerate(self.stages):
                heat = F.interpolate(self.maps[k, s][:, None], size=input_shape[1:], mode="bilinear",
                                     align_corners=False)[:, 0]
                out.append((f"map {k}, {stage}", heat, vmax))
        return out

    def frames(self, input_shape: Triple) -> List[int]:
        """The middle input frame of each grid time step (the frame a column of maps is drawn on)."""
        grid_map = GridMap(input_shape, self.grid)
        return [grid_map.centre_of((t, 0, 0))[0] for t in range(self.grid[0])]


def find_pyramid_head(model: nn.Module) -> PyramidAttentionHead | None:
    return next((m for m in model.modules() if isinstance(m, PyramidAttentionHead)), None)


@torch.no_grad()
def pyramid_maps(model: nn.Module, head: PyramidAttentionHead, clip: torch.Tensor) -> PyramidMaps:
    """Run the backbone on `clip` and return the head's attention maps over (scale, t, h, w)."""
    features = model.backbone.stage_features(clip[:1])
    grid = tuple(features[head.stages[-1]].shape[2:])
    attention = head.attention(head.positions(features))[0]  # (N, K), N = scales x t x h x w
    maps = attention.transpose(0, 1).reshape(-1, len(head.stages), *grid)
    return PyramidMaps(list(head.stages), grid, maps.float())
