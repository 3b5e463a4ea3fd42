"""The model the engine trains: backbone stage features -> head -> logits, plus auxiliary losses."""
from __future__ import annotations

from typing import Dict

import torch
from torch import nn


class VideoClassifier(nn.Module):
    """float clips (B, 3, T, H, W) -> logits (B, num_classes)."""

    def __init__(self, backbone: nn.Module, head: nn.Module, aux_weights: Dict[str, float]) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self._aux_weights = dict(aux_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone.stage_features(x))

    def aux_losses(self) -> Dict[str, torch.Tensor]:
        """Unweighted auxiliary losses of the last forward, e.g. {"pca": L}; {} when none."""
        return self.head.aux_losses()

    def aux_loss_weights(self) -> Dict[str, float]:
        """Weights the training loop multiplies the auxiliary losses by."""
        return dict(self._aux_weights)

    def attention_blocks(self) -> Dict[str, nn.Module]:
        """Placed attention blocks by name, e.g. "res4.3.nonlocal"."""
        return self.backbone.attention_blocks()
