"""The reader interface every decoder backend implements, the backend registry and the decode error.

A backend is a `VideoReader` subclass registered by name with `@register_backend(name)`; `open_video`
(video/decode.py) picks it by `data.backend`. Backends live in their own modules (decode_pyav.py,
decode_decord.py) and share only what is here.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Callable, Dict, Optional, Sequence, Tuple, Type

import numpy as np

from errors import UserError


class VideoDecodeError(UserError):
    """A video that cannot be opened or decoded; the message names the file and the reason."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"video {path}: {reason}")
        self.path, self.reason = path, reason

    def __reduce__(self):  # picklable across worker processes despite the two-argument constructor
        return type(self), (self.path, self.reason)


class VideoReader(ABC):
    """Random access to the frames of one video file; use as a context manager or call `close()`."""

    def __init__(self, path: str, short_side: Optional[int] = None):
        self.path = path
        self.short_side = short_side
        self.num_frames = 0
        self.fps = 0.0

    @property
    @abstractmethod
    def height(self) -> int:
        """Height of the returned frames in pixels."""

    @property
    @abstractmethod
    def width(self) -> int:
        """Width of the returned frames in pixels."""

    def get_frames(self, indices: Sequence[int]) -> np.ndarray:
        """uint8 frames (N, H, W, 3) for `indices` in the given order; repeats are decoded once."""
        wanted = np.asarray(indices, dtype=np.int64).reshape(-1)
        if wanted.size == 0:
            return np.empty((0, self.height, self.width, 3), dtype=np.uint8)
        outside = wanted[(wanted < 0) | (wanted >= self.num_frames)]
        if outside.size:
            raise IndexError(f"{self.path}: frame {int(outside[0])} is outside 0..{self.num_frames - 1}")
        if np.all(np.diff(wanted) > 0):
            return self._decode_sorted(wanted)
        unique, inverse = np.unique(wanted, return_inverse=True)
        return self._decode_sorted(unique)[inverse]

    @abstractmethod
    def _decode_sorted(self, indices: np.ndarray) -> np.ndarray:
        """Frames for strictly increasing, in-range indices."""

    def close(self) -> None:
        """Release the file and the decoder."""

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _fail(self, reason: str) -> VideoDecodeError:
        return VideoDecodeError(self.path, reason)


BACKENDS: Dict[str, Type[VideoReader]] = {}


def register_backend(name: str) -> Callable[[Type[VideoReader]], Type[VideoReader]]:
    """Class decorator: make a reader available to `open_video(..., backend=name)`."""

    def add(cls: Type[VideoReader]) -> Type[VideoReader]:
        BACKENDS[name] = cls
        return cls

    return add


def output_size(height: int, width: int, short_side: Optional[int]) -> Tuple[int, int]:
    """Frame size after scaling the short side down to `short_side` (never up)."""
    if short_side is None or min(height, width) <= short_side:
        return height, width
    factor = short_side / min(height, width)
    return max(1, round(height * factor)), max(1, round(width * factor))


def first_line(exc: BaseException) -> str:
    """The readable reason of a decoder exception (FFmpeg's text without errno and path)."""
    reason = getattr(exc, "strerror", None) or str(exc).strip()
    lines = [line.strip() for line in reason.splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__
