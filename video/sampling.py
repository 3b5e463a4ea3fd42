"""Which frames of a video make a clip: TSN segments, dense clips, multi-view test clips.

`sample_clips` returns frame indices (clips, T). Training draws from a `numpy.random.Generator` the
caller passes (no global RNG), so a seed fixes every draw; testing is deterministic: the centre clip,
or N clips evenly spaced from the first frame to the last. With `target_fps` the video is first
resampled to that rate, so a stride means the same time span in every video.
"""
from __future__ import annotations

from typing import Callable, Dict, Optional, Tuple

import numpy as np

from errors import UserError
from video.config import SamplingConfig


def clip_length(cfg: SamplingConfig) -> int:
    """Frames per clip: T for dense clips, one per segment for TSN."""
    return cfg.num_segments if cfg.mode == "segments" else cfg.num_frames


def _loop(length: int, count: int, stride: int) -> np.ndarray:
    return (np.arange(count) * stride) % length


def _repeat_last(length: int, count: int, stride: int) -> np.ndarray:
    return np.minimum(np.arange(count) * stride, length - 1)


def _stretch(length: int, count: int, stride: int) -> np.ndarray:
    return np.round(np.linspace(0, length - 1, count)).astype(np.int64)


# What a dense clip does in a video shorter than its span: wrap around, hold the last frame, or
# spread its frames evenly over the whole video (a smaller stride).
SHORT_VIDEO_RULES: Dict[str, Callable[[int, int, int], np.ndarray]] = {
    "loop": _loop, "repeat_last": _repeat_last, "stretch": _stretch,
}


def dense_clips(length: int, cfg: SamplingConfig, rng: Optional[np.random.Generator], clips: int) -> np.ndarray:
    """T frames at stride tau: a random start in training (rng given), else centre or evenly spaced."""
    span = (cfg.num_frames - 1) * cfg.stride + 1
    if length < span:
        return np.tile(SHORT_VIDEO_RULES[cfg.short_video](length, cfg.num_frames, cfg.stride), (clips, 1))
    if rng is not None:
        starts = rng.integers(0, length - span + 1, size=clips)
    elif clips == 1:
        starts = np.array([(length - span) // 2])
    else:
        starts = np.round(np.linspace(0, length - span, clips)).astype(np.int64)
    return starts[:, None] + np.arange(cfg.num_frames) * cfg.stride


def segment_clips(length: int, cfg: SamplingConfig, rng: Optional[np.random.Generator], clips: int) -> np.ndarray:
    """One frame in each of K equal segments: a random offset in training, else evenly spaced offsets
    (the segment centre for a single clip)."""
    segments = cfg.num_segments
    starts = np.arange(segments) * (length / segments)
    if rng is not None:
        offsets = rng.random((clips, segments))
    else:
        offsets = np.repeat(((np.arange(clips) + 0.5) / clips)[:, None], segments, axis=1)
    positions = np.floor(starts[None] + offsets * (length / segments)).astype(np.int64)
    return np.clip(positions, 0, length - 1)


SAMPLERS = {"dense": dense_clips, "segments": segment_clips}


def check_sampling(cfg: SamplingConfig) -> None:
    """Raise `UserError` naming the `data.sampling` key that has an impossible value."""
    if cfg.mode not in SAMPLERS:
        raise UserError(f"data.sampling.mode='{cfg.mode}': choose from {sorted(SAMPLERS)}")
    if cfg.short_video not in SHORT_VIDEO_RULES:
        raise UserError(f"data.sampling.short_video='{cfg.short_video}': choose from {sorted(SHORT_VIDEO_RULES)}")
    for key in ("num_frames", "stride", "num_segments"):
        if getattr(cfg, key) < 1:
            raise UserError(f"data.sampling.{key}={getattr(cfg, key)}: must be at least 1")
    if cfg.target_fps < 0:
        raise UserError(f"data.sampling.target_fps={cfg.target_fps}: must be >= 0 (0 keeps the native rate)")


def sample_clips(num_frames: int, cfg: SamplingConfig, rng: Optional[np.random.Generator] = None,
                 clips: int = 1, fps: float = 0.0) -> np.ndarray:
    """Frame indices (clips, T) into a video of `num_frames` frames at `fps`.

    Pass `rng` to draw training clips; leave it out for the deterministic test views.
    """
    check_sampling(cfg)
    if num_frames < 1:
        raise ValueError("a video needs at least one frame")
    step = fps / cfg.target_fps if cfg.target_fps > 0 and fps > 0 else 1.0
    length = int((num_frames - 1) // step) + 1  # frames of the video resampled to target_fps
    positions = SAMPLERS[cfg.mode](length, cfg, rng, clips)
    return np.minimum(np.round(positions * step).astype(np.int64), num_frames - 1)


def clip_span(cfg: SamplingConfig, fps: float = 0.0) -> int:
    """Native frames a video needs so that one clip fits without looping: K for segments; for dense clips
    T x stride, at `target_fps` converted to the video's rate `fps` (without `fps`: at the native rate)."""
    if cfg.mode == "segments":
        return cfg.num_segments
    step = fps / cfg.target_fps if cfg.target_fps > 0 and fps > 0 else 1.0
    return int(round(((cfg.num_frames - 1) * cfg.stride + 1) * step))


def window_clips(num_frames: int, cfg: SamplingConfig, fps: float, window: int,
                 stride: int) -> Tuple[np.ndarray, np.ndarray]:
    """Sliding windows of `window` frames every `stride` frames that cover the whole video (the last one
    ends at its last frame), each sampled as a test clip of that stretch: (first frames (windows,),
    indices (windows, T))."""
    if window < 1 or stride < 1:
        raise ValueError("window and stride must be at least one frame")
    window = min(window, num_frames)
    starts = list(range(0, num_frames - window + 1, stride))
    if starts[-1] + window < num_frames:
        starts.append(num_frames - window)
    inner = sample_clips(window, cfg, None, 1, fps)[0]
    starts = np.array(starts)
    return starts, starts[:, None] + inner[None]
