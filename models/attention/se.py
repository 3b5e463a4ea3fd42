"""Squeeze-and-excitation (Hu et al., 2018) in 3D: x * sigmoid(W2 ReLU(W1 mean_thw(x)))."""
from __future__ import annotations

import torch
from torch import nn

from models.options import reduced_width
from models.registry import ATTENTION


def channel_mlp(channels: int, hidden: int) -> nn.Sequential:
    """C -> hidden -> C with a ReLU between: the excitation MLP shared by SE, CBAM and BAM."""
    return nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, channels))


@ATTENTION.register("se")
class SqueezeExcitation(nn.Module):
    """Channel gates from the clip-wide average of each channel; (B, C, T, H, W) -> same."""

    def __init__(self, in_channels: int, reduction: int = 16) -> None:
        super().__init__()
        self.mlp = channel_mlp(in_channels, reduced_width(in_channels, reduction, "se reduction"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = torch.sigmoid(self.mlp(x.mean(dim=(2, 3, 4))))
        return x * gate[:, :, None, None, None]
