"""Write frames to a real video file with PyAV (H.264 in mp4 by default) at a chosen keyframe interval.

Used by the synthetic dataset, the Kinetics re-encoder and the tests. A short keyframe interval keeps
seeking cheap: a reader never decodes more than `keyframe_interval` frames to reach any frame.
"""
from __future__ import annotations

import os
from fractions import Fraction
from typing import Iterable, Union

import av
import numpy as np

from errors import UserError


class VideoWriter:
    """Streaming encoder: `write()` uint8 RGB arrays (H, W, 3) or PyAV frames, then `close()`."""

    def __init__(self, path: Union[str, os.PathLike], fps: float, width: int, height: int,
                 codec: str = "libx264", keyframe_interval: int = 16, crf: int = 18,
                 preset: str = "veryfast", threads: int = 1, faststart: bool = True):
        if width % 2 or height % 2:
            raise UserError(f"video {path}: width and height must be even for yuv420p, got {width}x{height}")
        self.path = os.fspath(path)
        # faststart: the mp4 index goes before the data, so readers find it without scanning the file
        is_mp4 = self.path.lower().endswith((".mp4", ".mov", ".m4v"))
        options = {"movflags": "+faststart"} if faststart and is_mp4 else {}
        self._container = av.open(self.path, mode="w", options=options)
        rate = Fraction(fps).limit_denominator(1001)
        self._time_base = 1 / rate  # frame k is shown at k / fps
        self._stream = self._container.add_stream(codec, rate=rate)
        self._stream.width, self._stream.height = width, height
        self._stream.pix_fmt = "yuv420p"
        context = self._stream.codec_context
        context.gop_size = keyframe_interval
        context.thread_count = threads
        if codec == "libx264":
            # scenecut=0: a keyframe exactly every `keyframe_interval` frames, so seeking cost is bounded;
            # mbtree=0: with it, x264 gave different bytes for identical input on small frames
            params = f"keyint={keyframe_interval}:scenecut=0:threads={threads}:mbtree=0"
            self._stream.options = {"crf": str(crf), "preset": preset, "x264-params": params}
        self._count = 0

    def write(self, frame: Union[np.ndarray, av.VideoFrame]) -> None:
        """Encode one frame: a uint8 RGB array (H, W, 3) or a PyAV frame of the stream's size."""
        if isinstance(frame, np.ndarray):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        frame.pts, frame.time_base = self._count, self._time_base
        self._count += 1
        for packet in self._stream.encode(frame):
            self._container.mux(packet)

    def close(self) -> None:
        """Flush the encoder and finish the file."""
        for packet in self._stream.encode(None):
            self._container.mux(packet)
        self._container.close()

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, *rest) -> None:
        if exc_type is None:
            self.close()
        else:
            self._container.close()


def write_video(path: Union[str, os.PathLike], frames: Union[np.ndarray, Iterable[np.ndarray]],
                fps: float, **options) -> None:
    """Encode uint8 RGB frames (T, H, W, 3) to `path`; `options` go to `VideoWriter`."""
    frames = iter(frames)
    first = next(frames)
    height, width = first.shape[:2]
    with VideoWriter(path, fps, width, height, **options) as writer:
        writer.write(first)
        for frame in frames:
            writer.write(frame)
