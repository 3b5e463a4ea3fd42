"""The 2D ResNet of TSN: one image network applied to every segment on its own.

Segments are folded into the batch, so nothing (not even a placed attention block) mixes segments;
stage features are unfolded back to (B, C, T, H, W) with T = number of segments.
"""
from __future__ import annotations

from typing import Dict

import torch

from models.backbones.resnet3d import ResNet3d, check_no_inflation
from models.config import ModelConfig
from models.registry import BACKBONES


class SegmentResNet(ResNet3d):
    """ResNet-18/34/50/101 with 2D kernels, run on each segment (frame) independently."""

    def __init__(self, depth: int = 50, width: float = 1.0) -> None:
        super().__init__(depth, width)

    def stage_features(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        b, c, t, h, w = x.shape
        frames = x.transpose(1, 2).reshape(b * t, c, 1, h, w)
        return {name: f.reshape(b, t, *f.shape[1:]).squeeze(3).transpose(1, 2)
                for name, f in super().stage_features(frames).items()}


@BACKBONES.register("tsn")
def tsn(cfg: ModelConfig) -> SegmentResNet:
    """TSN's per-segment 2D ResNet (model.temporal does not apply); the head averages the segments."""
    check_no_inflation(cfg)
    return SegmentResNet(cfg.depth, cfg.width)
