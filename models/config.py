"""Typed schema of the `model.*` config section (backbone, attention placement, heads)."""
from dataclasses import dataclass, field
from typing import Any, Dict, List


@dataclass
class IAAConfig:
    """Interaction-aware spatio-temporal pyramid attention head."""

    enabled: bool = False
    stages: List[int] = field(default_factory=lambda: [3, 4, 5])
    dim: int = 256  # common channel width of the pyramid
    num_maps: int = 4  # K attention maps
    loss_weight: float = 0.1
    detach_pca: bool = True  # L_pca trains A only, so it cannot collapse the backbone's features


@dataclass
class TemporalConfig:
    """Temporal kernel and strides of the stem and the pool after res2 (read by i3d and c2d; tsn has none)."""

    conv1_kernel: int = 5  # i3d only: conv1 is conv1_kernel x 7 x 7 (c2d: 1 x 7 x 7)
    conv1_stride: int = 2
    pool1_stride: int = 2
    res2_pool_stride: int = 2  # temporal max-pool after res2; 1 disables it
    # temporal kernels of those two max-pools, padded by (k - 1) // 2; 0: 2 * stride - 1 (the non-local
    # paper's choice; mmaction2's I3D uses 1 for pool1 and 2 for the pool after res2)
    pool1_kernel: int = 0
    res2_pool_kernel: int = 0


@dataclass
class ModelConfig:
    """Which network to build; `attention` entries place blocks by stage and block index."""

    arch: str = "i3d"  # registry name: tsn | c2d | i3d
    depth: int = 50  # 18 | 34 | 50 | 101
    width: float = 1.0  # channel multiplier (0.25 for tiny CPU variants)
    num_classes: int = 0  # 0: taken from the dataset's labels.txt
    dropout: float = 0.5
    pretrained: str = ""  # path to a torchvision-format 2D ResNet state dict to inflate
    temporal: TemporalConfig = field(default_factory=TemporalConfig)
    stem_pool_padding: int = 1  # spatial padding of the stem's 3x3 max-pool (mmaction2's C2D: 0)
    # i3d only: per stage res2..res5, one 0/1 per residual block (1 = 3x1x1 first conv);
    # empty: res2 all, res3/res4 every other block, res5 the middle block
    inflate: List[List[int]] = field(default_factory=list)
    attention: List[Dict[str, Any]] = field(default_factory=list)
    iaa: IAAConfig = field(default_factory=IAAConfig)
