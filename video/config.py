"""Typed schema of the `data.*` config section (decoding, sampling, transforms, loading)."""
from dataclasses import dataclass, field
from typing import List


@dataclass
class SamplingConfig:
    """How frame indices are chosen from a video (see video/sampling.py)."""

    mode: str = "dense"  # dense | segments
    num_frames: int = 8  # T for dense clips
    stride: int = 2  # tau for dense clips
    num_segments: int = 8  # K for TSN segments
    target_fps: float = 0.0  # resample to this fps first; 0 keeps the native rate
    short_video: str = "loop"  # rule for videos shorter than a clip: loop | repeat_last | stretch


@dataclass
class TransformConfig:
    """Clip-level augmentation and test-time cropping (see video/transforms.py)."""

    train_scale: List[int] = field(default_factory=lambda: [128, 160])  # short-side jitter range
    crop_size: int = 112
    test_scale: int = 128
    random_resized_crop: bool = False
    flip: bool = True
    mean: List[float] = field(default_factory=lambda: [0.45, 0.45, 0.45])
    std: List[float] = field(default_factory=lambda: [0.225, 0.225, 0.225])


@dataclass
class DataConfig:
    """Where the dataset folder is and how clips are decoded and streamed."""

    root: str = "data/synthetic"
    backend: str = "pyav"  # decord | pyav
    decode_threads: int = 1
    batch_size: int = 8
    num_workers: int = 2
    prefetch_factor: int = 2
    persistent_workers: bool = True
    pin_memory: bool = True  # only applied on GPU
    max_replacements: int = 10  # attempts to replace an undecodable video before giving up
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    transforms: TransformConfig = field(default_factory=TransformConfig)
