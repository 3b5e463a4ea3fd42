"""Typed schema of the `model.*` config section (backbone, attention placement, heads)."""
from dataclasses import dataclass, field
from typing import Any, Dict, List


@dataclass
class IAAConfig:
    """Interaction-aware spatio-temporal pyramid attention head (DESIGN.md)."""

    enabled: bool = False
    stages: List[int] = field(default_factory=lambda: [3, 4, 5])
    dim: int = 256  # common channel width of the pyramid
    num_maps: int = 4  # K attention maps
    loss_weight: float = 0.1


@dataclass
class ModelConfig:
    """Which network to build; `attention` entries place blocks by stage and block index."""

    arch: str = "i3d"  # registry name: tsn | c2d | i3d
    depth: int = 50
    width: float = 1.0
    num_classes: int = 0  # 0: taken from the dataset's labels.txt
    dropout: float = 0.5
    pretrained: str = ""  # path to a torchvision-format 2D ResNet state dict to inflate
    attention: List[Dict[str, Any]] = field(default_factory=list)
    iaa: IAAConfig = field(default_factory=IAAConfig)
