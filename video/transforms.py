"""Clip-level transforms: one set of random parameters for every frame of a clip.

A clip is a uint8 tensor (T, 3, H, W) and stays uint8 until `normalize`, which the engine calls on the
device. Random parameters come from the `numpy.random.Generator` passed in (never a global RNG), so
a seed fixes them. Crops are taken before resizing, so only the pixels that survive are resampled.
Each training transform maps `(clip, label, rng) -> (clip, label)` (a flip may swap the label);
each test transform maps a clip to its views (V, T, 3, h, w). `source_short_side` tells the decoder
how large frames need to be: more source pixels than that would only be averaged away.
"""
from __future__ import annotations

import math
from typing import Sequence, Tuple

import numpy as np
import torch
from torchvision.transforms.v2 import functional as F

from errors import UserError
from video.config import TransformConfig

Box = Tuple[int, int, int, int]  # top, left, height, width in source pixels


def _crop_resize(clip: torch.Tensor, box: Box, size: int) -> torch.Tensor:
    top, left, height, width = box
    return F.resized_crop(clip, top, left, height, width, [size, size], antialias=True)


def _scaled_size(height: int, width: int, short_side: int) -> Tuple[int, int]:
    factor = short_side / min(height, width)
    return max(1, round(height * factor)), max(1, round(width * factor))


class BoxCrop:
    """Base of the random crops: `box()` draws a region in source pixels, resized to `size` squared."""

    size: int

    def box(self, height: int, width: int, rng: np.random.Generator) -> Box:
        raise NotImplementedError

    def __call__(self, clip: torch.Tensor, label: int, rng: np.random.Generator) -> Tuple[torch.Tensor, int]:
        return _crop_resize(clip, self.box(clip.shape[-2], clip.shape[-1], rng), self.size), label


class ScaleJitterCrop(BoxCrop):
    """Resize the short side to a random length in [low, high], then take a random square crop."""

    def __init__(self, scale_range: Sequence[int], size: int):
        self.low, self.high, self.size = int(scale_range[0]), int(scale_range[1]), size
        self.source_short_side = self.high

    def box(self, height: int, width: int, rng: np.random.Generator) -> Box:
        short = int(rng.integers(self.low, self.high + 1))
        factor = min(height, width) / short  # source pixels per scaled pixel
        scaled_h, scaled_w = _scaled_size(height, width, short)
        top = int(rng.integers(0, max(scaled_h - self.size, 0) + 1))
        left = int(rng.integers(0, max(scaled_w - self.size, 0) + 1))
        side = self.size * factor
        return (round(top * factor), round(left * factor),
                max(1, min(round(side), height)), max(1, min(round(side), width)))


class RandomResizedCrop(BoxCrop):
    """A random box of a random area fraction and aspect ratio, resized to a square (Inception-style)."""

    def __init__(self, size: int, area_range: Sequence[float], aspect_range: Sequence[float]):
        self.size, self.area_range = size, (float(area_range[0]), float(area_range[1]))
        self.log_aspect = (math.log(aspect_range[0]), math.log(aspect_range[1]))
        # at this frame short side even the smallest, most elongated box keeps `size` pixels across
        widest = max(aspect_range[1], 1 / aspect_range[0])
        self.source_short_side = math.ceil(size * math.sqrt(widest / self.area_range[0]))

    def box(self, height: int, width: int, rng: np.random.Generator) -> Box:
        for _ in range(10):
            area = height * width * rng.uniform(*self.area_range)
            aspect = math.exp(rng.uniform(*self.log_aspect))
            box_w, box_h = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
            if 0 < box_w <= width and 0 < box_h <= height:
                return int(rng.integers(0, height - box_h + 1)), int(rng.integers(0, width - box_w + 1)), box_h, box_w
        side = min(height, width)  # fallback: the central square
        return (height - side) // 2, (width - side) // 2, side, side


class HorizontalFlip:
    """Mirror the whole clip with probability `p`; `swap[label]` is the label of the mirrored clip.

    Direction-sensitive classes (move_left <-> move_right) change meaning under a mirror, so the
    label must follow; classes not in a pair keep theirs.
    """

    def __init__(self, num_classes: int, pairs: Sequence[Tuple[int, int]] = (), p: float = 0.5):
        self.p = p
        self.swap = list(range(num_classes))
        for a, b in pairs:
            self.swap[a], self.swap[b] = b, a

    def __call__(self, clip: torch.Tensor, label: int, rng: np.random.Generator) -> Tuple[torch.Tensor, int]:
        if rng.random() < self.p:
            return F.horizontal_flip(clip), self.swap[label]
        return clip, label


class Compose:
    """Apply training transforms in order, threading the label and the generator through."""

    def __init__(self, transforms: Sequence):
        self.transforms = list(transforms)
        self.source_short_side = max(getattr(t, "source_short_side", 0) for t in self.transforms) or None

    def __call__(self, clip: torch.Tensor, label: int, rng: np.random.Generator) -> Tuple[torch.Tensor, int]:
        for transform in self.transforms:
            clip, label = transform(clip, label, rng)
        return clip, label


class CropViews:
    """Base of the test-time croppers: views of `size` pixels from a clip resized to short side `scale`."""

    def __init__(self, scale: int, size: int):
        self.scale, self.size = scale, size
        self.source_short_side = scale


class CenterCrop(CropViews):
    """One view: short side resized to `scale`, the central square crop."""

    def __call__(self, clip: torch.Tensor) -> torch.Tensor:
        height, width = clip.shape[-2:]
        factor = min(height, width) / self.scale
        side = min(round(self.size * factor), height, width)
        box = ((height - side) // 2, (width - side) // 2, side, side)
        return _crop_resize(clip, box, self.size)[None]


class ThreeCrop(CropViews):
    """Three views along the long side (start, centre, end) of the clip resized to short side `scale`."""

    def __call__(self, clip: torch.Tensor) -> torch.Tensor:
        clip = F.resize(clip, list(_scaled_size(*clip.shape[-2:], self.scale)), antialias=True)
        height, width, size = clip.shape[-2], clip.shape[-1], self.size
        if width >= height:
            corners = [((height - size) // 2, left) for left in (0, (width - size) // 2, width - size)]
        else:
            corners = [(top, (width - size) // 2) for top in (0, (height - size) // 2, height - size)]
        return torch.stack([F.crop(clip, top, left, size, size) for top, left in corners])


class TenCrop(CropViews):
    """Ten views: four corners and the centre, and their mirror images (torchvision's ten_crop)."""

    def __call__(self, clip: torch.Tensor) -> torch.Tensor:
        clip = F.resize(clip, list(_scaled_size(*clip.shape[-2:], self.scale)), antialias=True)
        return torch.stack(F.ten_crop(clip, [self.size, self.size]))


TEST_CROPS = {1: CenterCrop, 3: ThreeCrop, 10: TenCrop}


def _check_sizes(cfg: TransformConfig) -> None:
    low, high = cfg.train_scale
    if not 0 < low <= high:
        raise UserError(f"data.transforms.train_scale={list(cfg.train_scale)}: need 0 < min <= max")
    if cfg.crop_size < 1 or cfg.crop_size > cfg.test_scale:
        raise UserError(f"data.transforms.crop_size={cfg.crop_size}: must be in 1..test_scale ({cfg.test_scale})")


def build_train_transform(cfg: TransformConfig, num_classes: int,
                          flip_pairs: Sequence[Tuple[int, int]] = ()) -> Compose:
    """Random crop (scale jitter or random resized crop), then an optional label-aware flip."""
    _check_sizes(cfg)
    if cfg.random_resized_crop:
        crop = RandomResizedCrop(cfg.crop_size, cfg.area_range, cfg.aspect_range)
    else:
        crop = ScaleJitterCrop(cfg.train_scale, cfg.crop_size)
    return Compose([crop] + ([HorizontalFlip(num_classes, flip_pairs)] if cfg.flip else []))


def build_test_transform(cfg: TransformConfig, crops: int, flip_pairs: Sequence[Tuple[int, int]] = ()):
    """The test views of one clip: 1 (centre), 3 (along the long side) or 10 crops."""
    _check_sizes(cfg)
    if crops not in TEST_CROPS:
        raise UserError(f"test.crops={crops}: choose from {sorted(TEST_CROPS)}")
    if crops == 10 and flip_pairs:
        raise UserError("test.crops=10 mirrors half of the views, which changes the class of this dataset's "
                        "direction-sensitive pairs (flip_pairs.txt); use test.crops=1 or 3")
    return TEST_CROPS[crops](cfg.test_scale, cfg.crop_size)


def normalize(clip: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 clips (..., 3, T, H, W) to float (x / 255 - mean) / std, on the clip's device."""
    shape = (3, 1, 1, 1)
    mean_t = torch.tensor(mean, dtype=torch.float32, device=clip.device).view(shape)
    std_t = torch.tensor(std, dtype=torch.float32, device=clip.device).view(shape)
    return clip.float().div_(255.0).sub_(mean_t).div_(std_t)
