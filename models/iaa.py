"""Interaction-aware spatio-temporal pyramid attention head and its PCA-style loss.

Stage features (the pyramid) are average-pooled to the grid of the deepest stage, projected to `dim`
channels, and every position of every scale and time becomes a row of X (N x C). Scores S = X A + b with
b = -mean(X) A (centring: S are the principal-component scores of Xc when A is orthonormal); softmax over
the N positions gives K attention maps, and the K attended descriptors softmax(S)^T X go to the
classifier. Softmax over positions is invariant to b, so b shapes the scores, not the maps.
The auxiliary loss L_pca = ||Xc - Xc A A^T||^2 / ||Xc||^2 has its minimisers at orthonormal A spanning
the top-K principal subspace of Xc (a tied linear autoencoder), so A learns the features' principal
directions without an eigendecomposition.
"""
from __future__ import annotations

from typing import Dict, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from errors import UserError
from models.heads import linear_classifier


def _bin_averages(length: int, bins: int, like: torch.Tensor) -> torch.Tensor:
    """(bins, length): row i averages the inputs adaptive average pooling puts in bin i."""
    start = torch.arange(bins) * length // bins
    end = (torch.arange(1, bins + 1) * length + bins - 1) // bins
    index = torch.arange(length)
    inside = ((index >= start[:, None]) & (index < end[:, None])).to(like.dtype)
    return (inside / inside.sum(1, keepdim=True)).to(like.device)


def pool_to_grid(x: torch.Tensor, grid: Sequence[int]) -> torch.Tensor:
    """adaptive_avg_pool3d(x, grid); under ONNX export as small matrix products, which ONNX supports for
    any grid (training keeps the pool, whose saved tensors the memory profiler models)."""
    if tuple(x.shape[2:]) == tuple(grid):
        return x
    if not torch.onnx.is_in_onnx_export():
        return F.adaptive_avg_pool3d(x, tuple(grid))
    t, h, w = (_bin_averages(n, g, x) for n, g in zip(x.shape[2:], grid))
    return torch.einsum("bcthw,ut,vh,xw->bcuvx", x, t, h, w)


def pca_loss(x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of ||Xc - Xc A A^T||^2 / ||Xc||^2, x (B, N, C) centred over N, a (C, K)."""
    xc = x - x.mean(dim=1, keepdim=True)
    residual = xc - (xc @ a) @ a.transpose(0, 1)
    total = xc.square().sum(dim=(1, 2)).clamp_min(torch.finfo(x.dtype).tiny)
    return (residual.square().sum(dim=(1, 2)) / total).mean()


class PyramidAttentionHead(nn.Module):
    """K softmax attention maps over all positions of a multi-stage, multi-frame pyramid; see module doc."""

    def __init__(self, stage_channels: Dict[str, int], stages: Sequence[int], dim: int, num_maps: int,
                 num_classes: int, dropout: float, detach_pca: bool = True) -> None:
        super().__init__()
        names = [f"res{s}" for s in stages]
        bad = [s for s, name in zip(stages, names) if name not in stage_channels]
        if not names or bad:
            raise UserError(f"model.iaa.stages={list(stages)} must be a non-empty list of stages 2..5")
        if not 1 <= num_maps <= dim:
            raise UserError(f"model.iaa.num_maps={num_maps} must be between 1 and model.iaa.dim={dim}")
        self.stages = sorted(names)  # the deepest stage (last) sets the common grid
        self.project = nn.ModuleDict({
            name: nn.Sequential(nn.Conv3d(stage_channels[name], dim, 1, bias=False), nn.BatchNorm3d(dim),
                                nn.ReLU(inplace=True))
            for name in self.stages})
        self.maps = nn.Parameter(nn.init.orthogonal_(torch.empty(dim, num_maps)))  # A (C x K)
        self.detach_pca = detach_pca
        self.dropout = nn.Dropout(dropout)
        self.fc = linear_classifier(num_maps * dim, num_classes)
        self._pca = None

    def positions(self, features: Dict[str, torch.Tensor]) -> torch.Tensor:
        """X: (B, N, dim), N = scales x T x H x W on the common grid."""
        grid = features[self.stages[-1]].shape[2:]
        rows = [self.project[name](pool_to_grid(features[name], grid)).flatten(2)
                for name in self.stages]
        return torch.cat(rows, dim=2).transpose(1, 2)

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """softmax over positions of S = X A + b, b = -mean(X) A: (B, N, K)."""
        return ((x - x.mean(dim=1, keepdim=True)) @ self.maps).softmax(dim=1)

    def forward(self, features: Dict[str, torch.Tensor]) -> torch.Tensor:
        x = self.positions(features)
        descriptors = self.attention(x).transpose(1, 2) @ x  # (B, K, dim)
        self._pca = pca_loss(x.detach() if self.detach_pca else x, self.maps)
        return self.fc(self.dropout(descriptors.flatten(1)))

    def __getstate__(self) -> dict:
        """Copies (EMA, deepcopy) and pickles leave out the last forward's loss: a graph node, not state."""
        state = self.__dict__.copy()
        state["_pca"] = None
        return state

    def aux_losses(self) -> Dict[str, torch.Tensor]:
        """{"pca": L_pca} of the last forward (unweighted)."""
        return {} if self._pca is None else {"pca": self._pca}
