"""BAM (Park et al., 2018) in 3D: F' = F + F * sigmoid(Mc(F) + Ms(F)), the two branches in parallel.

Mc(F) = BN(MLP(avgpool(F))) per channel; Ms(F) = BN(1x1(dilated 3x3(dilated 3x3(1x1(F))))) per position
(reduce to C/r, two convs with spatial dilation `dilation`, down to 1 channel; BN + ReLU between).
`temporal_kernel` 3 makes the dilated convs 3x3x3 (no temporal dilation). BN on the pooled channel
descriptor needs a batch of more than one clip in training, as in the paper.
"""
from __future__ import annotations

import torch
from torch import nn

from models.attention.se import channel_mlp
from models.options import check_positive_int, reduced_width
from models.registry import ATTENTION


def _conv_bn_relu(in_channels: int, out_channels: int, kernel: tuple, dilation: tuple) -> list:
    padding = tuple(d * (k // 2) for k, d in zip(kernel, dilation))
    return [nn.Conv3d(in_channels, out_channels, kernel, padding=padding, dilation=dilation),
            nn.BatchNorm3d(out_channels), nn.ReLU(inplace=True)]


@ATTENTION.register("bam")
class BAM(nn.Module):
    """Bottleneck attention module; (B, C, T, H, W) -> same."""

    def __init__(self, in_channels: int, reduction: int = 16, dilation: int = 4, temporal_kernel: int = 1) -> None:
        super().__init__()
        hidden = reduced_width(in_channels, reduction, "bam reduction")
        kernel = (check_positive_int("bam temporal_kernel", temporal_kernel), 3, 3)
        dilated = (1, check_positive_int("bam dilation", dilation), dilation)
        self.channel = nn.Sequential(channel_mlp(in_channels, hidden), nn.BatchNorm1d(in_channels))
        self.spatial = nn.Sequential(
            *_conv_bn_relu(in_channels, hidden, (1, 1, 1), (1, 1, 1)),
            *_conv_bn_relu(hidden, hidden, kernel, dilated),
            *_conv_bn_relu(hidden, hidden, kernel, dilated),
            nn.Conv3d(hidden, 1, 1), nn.BatchNorm3d(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channel = self.channel(x.mean(dim=(2, 3, 4)))[:, :, None, None, None]  # (B, C, 1, 1, 1)
        spatial = self.spatial(x)  # (B, 1, T, H, W)
        return x + x * torch.sigmoid(channel + spatial)
