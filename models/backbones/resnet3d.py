"""ResNet on clips (B,C,T,H,W): C2D when every temporal kernel is 1, I3D when blocks are inflated.

I3D follows the non-local paper's 3x1x1 variant: an inflated bottleneck turns its first 1x1 conv into
3x1x1 (a basic block its first 3x3 into 3x3x3); default pattern res2 all blocks, res3/res4 every other
block, res5 the middle one. Module names mirror torchvision (`conv1`, `bn1`, `res2.0.conv1`,
`res2.0.downsample.0`, ...) with `layerN` renamed `res{N+1}`, so 2D weights inflate by key.

Feature maps of the default I3D-R50 (conv1 5x7x7 stride 2,2,2; pool1 3x3x3 stride 2,2,2; a 3x1x1
temporal max-pool stride 2 after res2) for a 32x224x224 clip, as channels x T x H x W:

    conv1  64 x 16 x 112 x 112      res3   512 x 4 x 28 x 28
    pool1  64 x  8 x  56 x  56      res4  1024 x 4 x 14 x 14
    res2  256 x  8 x  56 x  56      res5  2048 x 4 x  7 x  7
    pool2 256 x  4 x  56 x  56

A temporal stride s uses kernel 2s-1 with padding s-1, so T becomes ceil(T / s) (`model.temporal.pool1_kernel`
and `res2_pool_kernel` choose other kernels, as mmaction2's I3D has).
"""
from __future__ import annotations

from typing import Dict, List, Sequence

import torch
from torch import nn

from errors import UserError
from models.config import ModelConfig
from models.registry import BACKBONES

STAGES = ("res2", "res3", "res4", "res5")


class ResidualBlock(nn.Module):
    """A residual block whose output passes through the attention blocks placed after it."""

    expansion = 1

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv3d(in_channels, out_channels, 1, stride=(1, stride, stride), bias=False),
                nn.BatchNorm3d(out_channels),
            )
        self.attention = nn.ModuleDict()  # type name -> block, applied in insertion order

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.branch(x) + shortcut)
        for block in self.attention.values():
            out = block(out)
        return out


def _conv_bn(in_channels: int, out_channels: int, kernel: tuple, stride: tuple = (1, 1, 1)):
    padding = tuple(k // 2 for k in kernel)
    return (nn.Conv3d(in_channels, out_channels, kernel, stride=stride, padding=padding, bias=False),
            nn.BatchNorm3d(out_channels))


class BasicBlock(ResidualBlock):
    """Two 3x3 convs; inflation makes the first one 3x3x3."""

    expansion = 1

    def __init__(self, in_channels: int, planes: int, stride: int, inflate: bool) -> None:
        super().__init__(in_channels, planes, stride)
        self.conv1, self.bn1 = _conv_bn(in_channels, planes, (3 if inflate else 1, 3, 3), (1, stride, stride))
        self.conv2, self.bn2 = _conv_bn(planes, planes, (1, 3, 3))

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))


class Bottleneck(ResidualBlock):
    """1x1 -> 3x3 (carrying the stride, as torchvision) -> 1x1; inflation makes the first 1x1 a 3x1x1."""

    expansion = 4

    def __init__(self, in_channels: int, planes: int, stride: int, inflate: bool) -> None:
        super().__init__(in_channels, planes * self.expansion, stride)
        self.conv1, self.bn1 = _conv_bn(in_channels, planes, (3 if inflate else 1, 1, 1))
        self.conv2, self.bn2 = _conv_bn(planes, planes, (1, 3, 3), (1, stride, stride))
        self.conv3, self.bn3 = _conv_bn(planes, planes * self.expansion, (1, 1, 1))

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.bn3(self.conv3(out))


LAYOUTS = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
}


def _max_pool(stride_t: int, kernel_t: int, spatial_padding: int | None) -> nn.Module:
    """Max-pool with temporal stride `stride_t` and kernel `kernel_t` (0: 2s-1), padded by (k-1)//2, and
    with a `spatial_padding` the 3x3 stride-2 spatial pool of the stem (None: no spatial pooling)."""
    kernel_t = kernel_t or 2 * stride_t - 1
    if stride_t == 1 and kernel_t == 1 and spatial_padding is None:
        return nn.Identity()
    spatial = spatial_padding is not None
    kernel = (kernel_t, 3, 3) if spatial else (kernel_t, 1, 1)
    stride = (stride_t, 2, 2) if spatial else (stride_t, 1, 1)
    padding = ((kernel_t - 1) // 2, spatial_padding, spatial_padding) if spatial else ((kernel_t - 1) // 2, 0, 0)
    return nn.MaxPool3d(kernel, stride, padding=padding)


def default_inflation(depth: int) -> List[List[int]]:
    """The common I3D pattern: res2 all blocks, res3/res4 every other block, res5 the middle one."""
    res2, res3, res4, res5 = _layout(depth)[1]
    return [[1] * res2, [int(j % 2 == 0) for j in range(res3)], [int(j % 2 == 0) for j in range(res4)],
            [int(j == res5 // 2) for j in range(res5)]]


def _layout(depth: int):
    if depth not in LAYOUTS:
        raise UserError(f"model.depth={depth} is not one of {', '.join(map(str, LAYOUTS))}")
    return LAYOUTS[depth]


def _check_strides(**strides: int) -> None:
    for name, value in strides.items():
        if not isinstance(value, int) or value < 1:
            raise UserError(f"model.temporal.{name}={value} must be a positive integer")


class ResNet3d(nn.Module):
    """ResNet-18/34/50/101 on clips; temporal kernels/strides default to 1 (a per-frame 2D network)."""

    def __init__(self, depth: int = 50, width: float = 1.0, conv1_kernel: int = 1, conv1_stride: int = 1,
                 pool1_stride: int = 1, res2_pool_stride: int = 1,
                 inflate: Sequence[Sequence[int]] | None = None, pool1_kernel: int = 0, res2_pool_kernel: int = 0,
                 stem_pool_padding: int = 1) -> None:
        super().__init__()
        block, layers = _layout(depth)
        _check_strides(conv1_kernel=conv1_kernel, conv1_stride=conv1_stride, pool1_stride=pool1_stride,
                       res2_pool_stride=res2_pool_stride)
        for name, kernel in (("pool1_kernel", pool1_kernel), ("res2_pool_kernel", res2_pool_kernel)):
            if not isinstance(kernel, int) or kernel < 0:
                raise UserError(f"model.temporal.{name}={kernel} must be 0 (automatic) or a positive integer")
        if stem_pool_padding not in (0, 1):
            raise UserError(f"model.stem_pool_padding={stem_pool_padding} must be 0 or 1")
        if width <= 0:
            raise UserError(f"model.width={width} must be positive")
        inflate = [[0] * n for n in layers] if inflate is None else inflate
        if len(inflate) != 4 or any(len(flags) != n for flags, n in zip(inflate, layers)):
            counts = "/".join(map(str, layers))
            raise UserError(f"model.inflate must give one 0/1 per block of res2..res5 ({counts} blocks "
                            f"for depth {depth}), got {[list(flags) for flags in inflate]}")
        stem = max(1, round(64 * width))
        self.conv1, self.bn1 = _conv_bn(3, stem, (conv1_kernel, 7, 7), (conv1_stride, 2, 2))
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = _max_pool(pool1_stride, pool1_kernel, stem_pool_padding)
        self.res2_pool = _max_pool(res2_pool_stride, res2_pool_kernel, None)
        self.stage_channels: Dict[str, int] = {}
        self.stage_depths: Dict[str, int] = {}
        channels = stem
        for index, (name, blocks, flags) in enumerate(zip(STAGES, layers, inflate)):
            planes = stem * 2 ** index
            stage = []
            for j in range(blocks):
                stride = 2 if index > 0 and j == 0 else 1
                stage.append(block(channels, planes, stride, bool(flags[j])))
                channels = planes * block.expansion
            self.add_module(name, nn.Sequential(*stage))
            self.stage_channels[name] = channels
            self.stage_depths[name] = blocks
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv3d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm3d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def stage_features(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Outputs of res2..res5 (res2 before the temporal pool that follows it)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        features = {}
        for name in STAGES:
            x = self.get_submodule(name)(x)
            features[name] = x
            if name == "res2":
                x = self.res2_pool(x)
        return features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stage_features(x)["res5"]

    def residual_block(self, stage: str, index: int) -> ResidualBlock:
        return self.get_submodule(stage)[index]

    def attention_blocks(self) -> Dict[str, nn.Module]:
        """Placed attention blocks by name `stage.block.type`, e.g. "res4.3.nonlocal"."""
        return {f"{stage}.{j}.{kind}": module
                for stage in STAGES for j, block in enumerate(self.get_submodule(stage))
                for kind, module in block.attention.items()}


@BACKBONES.register("i3d")
def i3d(cfg: ModelConfig) -> ResNet3d:
    """Inflated 3D ResNet (the non-local paper's 3x1x1 variant)."""
    t = cfg.temporal
    if t.conv1_kernel % 2 == 0:
        raise UserError(f"model.temporal.conv1_kernel={t.conv1_kernel} must be odd (centred padding)")
    return ResNet3d(cfg.depth, cfg.width, t.conv1_kernel, t.conv1_stride, t.pool1_stride, t.res2_pool_stride,
                    inflate=[list(flags) for flags in cfg.inflate] or default_inflation(cfg.depth),
                    **pool_options(cfg))


def pool_options(cfg: ModelConfig) -> Dict[str, int]:
    """The stem and res2 pooling options of `cfg` as ResNet3d keyword arguments."""
    return {"pool1_kernel": cfg.temporal.pool1_kernel, "res2_pool_kernel": cfg.temporal.res2_pool_kernel,
            "stem_pool_padding": cfg.stem_pool_padding}


def check_no_inflation(cfg: ModelConfig) -> None:
    """2D backbones have no temporal kernels, so an inflation pattern is a config mistake."""
    if cfg.inflate:
        raise UserError(f"model.inflate applies to arch i3d only; {cfg.arch} has no temporal kernels")


@BACKBONES.register("c2d")
def c2d(cfg: ModelConfig) -> ResNet3d:
    """2D kernels on every frame with the I3D temporal strides, so attention blocks can span time."""
    check_no_inflation(cfg)
    t = cfg.temporal
    return ResNet3d(cfg.depth, cfg.width, 1, t.conv1_stride, t.pool1_stride, t.res2_pool_stride, **pool_options(cfg))
