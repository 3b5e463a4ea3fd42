"""Fully attentional block (Song et al., 2022, FLANet) extended with a time axis.

For each axis a in (T, H, W): every line of the clip along a (fixed position on the other two axes)
is a C x L_a matrix F_l; the global context of a is F averaged over the other two axes (C x L_a),
linearly projected per position to Q_a (L_a x C). The line's full relation softmax(F_l Q_a) (C x C,
softmax over the last axis) mixes channels with spatial context: A_l = softmax(F_l Q_a) F_l.
Output: gamma * (A_T + A_H + A_W) + x, gamma starting at 0 (identity). FLANet's segmentation head
follows the block with a 3x3 conv-BN-ReLU; that belongs to their head and is left out here.
"""
from __future__ import annotations

import torch
from torch import nn

from models.registry import ATTENTION

AXES = (2, 3, 4)  # T, H, W of (B, C, T, H, W)


@ATTENTION.register("fla")
class FullyAttentional(nn.Module):
    """Channel attention conditioned on line-wise global context along T, H and W; (B,C,T,H,W) -> same."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.context = nn.ModuleList(nn.Linear(in_channels, in_channels) for _ in AXES)
        self.gamma = nn.Parameter(torch.zeros(1))

    def _along(self, x: torch.Tensor, axis: int, project: nn.Linear) -> torch.Tensor:
        others = tuple(a for a in AXES if a != axis)
        context = project(x.mean(dim=others).transpose(1, 2))  # (B, L, C)
        lines = x.movedim((1, axis), (3, 4))  # (B, o1, o2, C, L); non-negative dims, which ONNX export needs
        relation = (lines @ context[:, None, None]).softmax(dim=-1)  # (B, o1, o2, C, C)
        return (relation @ lines).movedim((3, 4), (1, axis))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        attended = sum(self._along(x, axis, project) for axis, project in zip(AXES, self.context))
        return self.gamma * attended + x
