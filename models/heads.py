"""Classifier heads on the backbone's stage features: global average pooling, or TSN's segment consensus."""
from __future__ import annotations

from typing import Dict

import torch
from torch import nn


def linear_classifier(in_features: int, num_classes: int) -> nn.Linear:
    """A linear layer with the small-normal init used for video classifiers."""
    fc = nn.Linear(in_features, num_classes)
    nn.init.normal_(fc.weight, std=0.01)
    nn.init.zeros_(fc.bias)
    return fc


class ClassifierHead(nn.Module):
    """Average pool res5, dropout, linear. With `per_segment` (TSN) each segment is classified on its own
    and the scores are averaged over segments (the average consensus)."""

    def __init__(self, in_channels: int, num_classes: int, dropout: float, per_segment: bool = False) -> None:
        super().__init__()
        self.per_segment = per_segment
        self.dropout = nn.Dropout(dropout)
        self.fc = linear_classifier(in_channels, num_classes)

    def forward(self, features: Dict[str, torch.Tensor]) -> torch.Tensor:
        x = features["res5"]
        if self.per_segment:
            segments = x.mean(dim=(3, 4)).transpose(1, 2)  # (B, T, C): one descriptor per segment
            return self.fc(self.dropout(segments)).mean(dim=1)
        return self.fc(self.dropout(x.mean(dim=(2, 3, 4))))

    def aux_losses(self) -> Dict[str, torch.Tensor]:
        return {}
