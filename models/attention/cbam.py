"""CBAM (Woo et al., 2018) in 3D: channel attention, then spatial(-temporal) attention, both multiplicative.

Mc = sigmoid(MLP(avgpool(F)) + MLP(maxpool(F))) with one shared MLP and a real max over T, H, W;
F' = Mc * F. Ms = sigmoid(conv([mean_c(F'); max_c(F')])) with a `temporal_kernel` x k x k conv (1x7x7
keeps it per frame, 3x7x7 lets it see neighbouring frames); F'' = Ms * F'.
"""
from __future__ import annotations

import torch
from torch import nn

from models.attention.se import channel_mlp
from models.options import check_positive_int, reduced_width
from models.registry import ATTENTION


@ATTENTION.register("cbam")
class CBAM(nn.Module):
    """Convolutional block attention module; (B, C, T, H, W) -> same."""

    def __init__(self, in_channels: int, reduction: int = 16, spatial_kernel: int = 7,
                 temporal_kernel: int = 1) -> None:
        super().__init__()
        self.mlp = channel_mlp(in_channels, reduced_width(in_channels, reduction, "cbam reduction"))
        kernel = (check_positive_int("cbam temporal_kernel", temporal_kernel),
                  check_positive_int("cbam spatial_kernel", spatial_kernel), spatial_kernel)
        self.spatial = nn.Conv3d(2, 1, kernel, padding=tuple(k // 2 for k in kernel), bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled_avg, pooled_max = x.mean(dim=(2, 3, 4)), x.amax(dim=(2, 3, 4))
        channel_gate = torch.sigmoid(self.mlp(pooled_avg) + self.mlp(pooled_max))
        x = x * channel_gate[:, :, None, None, None]
        descriptors = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.spatial(descriptors))
