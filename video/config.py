"""Typed schema of the `data.*` config section (decoding, sampling, transforms, loading).

The defaults fit the built-in synthetic dataset (16 frames of 64x64): dense clips of 8 frames at
stride 2 span the whole video, so the cue in the first frames and the event in the last frames are
always both in the clip; crops of 56 keep them in view. Real datasets set their own sizes, e.g.
`data.transforms.train_scale=[256,320] data.transforms.crop_size=224 data.transforms.test_scale=256`.
"""
from dataclasses import dataclass, field
from typing import List, Union

from errors import UserError


@dataclass
class SamplingConfig:
    """How frame indices are chosen from a video (see video/sampling.py)."""

    mode: str = "dense"  # dense | segments
    num_frames: int = 8  # T for dense clips
    stride: int = 2  # tau for dense clips
    num_segments: int = 8  # K for TSN segments (T = K, one frame per segment)
    target_fps: float = 0.0  # resample to this fps first; 0 keeps the native rate
    short_video: str = "loop"  # dense clips longer than the video: loop | repeat_last | stretch


@dataclass
class TransformConfig:
    """Clip-level augmentation and test-time cropping (see video/transforms.py)."""

    train_scale: List[int] = field(default_factory=lambda: [64, 72])  # short-side jitter range [min, max]
    crop_size: int = 56
    test_scale: int = 64  # short side before the test crops
    random_resized_crop: bool = False  # instead of scale jitter + random crop
    area_range: List[float] = field(default_factory=lambda: [0.35, 1.0])  # random resized crop: area fraction
    aspect_range: List[float] = field(default_factory=lambda: [0.75, 1.3333])  # random resized crop: w/h
    flip: bool = True  # horizontal flip; classes listed in the dataset's flip_pairs.txt swap labels
    mean: List[float] = field(default_factory=lambda: [0.45, 0.45, 0.45])
    std: List[float] = field(default_factory=lambda: [0.225, 0.225, 0.225])


@dataclass
class DataConfig:
    """Where the dataset folder is and how clips are decoded and streamed."""

    root: str = "data/synthetic"
    format: str = "folders"  # folders (data.root) | shards (tar shards of `prep shards`, see video/shard_stream.py)
    shards: str = ""  # format=shards: the training shards, "DIR/train-{000000..000099}.tar", a path or "pipe:CMD"
    val_shards: str = ""  # format=shards: the validation (and `run.py test`) shards, the same forms
    shard_buffer: int = 64  # format=shards: samples each loader worker holds to shuffle its stream
    backend: str = "pyav"  # decord | pyav
    decode_threads: int = 1  # decoder threads per loader worker
    batch_size: Union[int, str] = 8  # clips per rank and step; `auto` (train): the largest trainer.memory_budget fits
    num_workers: int = 2
    prefetch_factor: int = 2
    persistent_workers: bool = True
    pin_memory: bool = True  # only applied on GPU
    max_replacements: int = 10  # attempts to replace an undecodable training video before giving up
    decode_timeout: float = 0.0  # seconds per video, decoded in a killable child process; 0: no limit
    worker_max_rss: float = 0.0  # MiB per training loader worker; above it the workers restart between steps; 0: no limit
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    transforms: TransformConfig = field(default_factory=TransformConfig)



def check_batch_size(cfg: DataConfig) -> None:
    """Reject a `data.batch_size` that is neither a number nor `auto` (the schema admits any word)."""
    if isinstance(cfg.batch_size, str) and cfg.batch_size != "auto":
        raise UserError(f"data.batch_size={cfg.batch_size}: give a number of clips or auto")


def fixed_batch_size(cfg: DataConfig) -> int:
    """`data.batch_size` as a number; `auto` is for `run.py train`, which replaces it before loading."""
    check_batch_size(cfg)
    if cfg.batch_size == "auto":
        raise UserError("data.batch_size=auto is chosen by `run.py train` only; give a number of clips")
    return cfg.batch_size
