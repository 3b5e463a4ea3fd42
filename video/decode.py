"""Frame-accurate random access to video files behind one reader interface, with two backends.

This module is the public face: `open_video` and the names callers need. The interface and registry
are in decode_base.py, each backend in its own module (decode_pyav.py, decode_decord.py).

`open_video(path, backend)` returns a `VideoReader` whose `get_frames(indices)` gives uint8 RGB frames
(N, H, W, 3) in the requested order. Frame `i` is the i-th frame in presentation order (what a plain
decode from the start yields). Each wanted frame is decoded once, starting from the nearest keyframe
before it (never from the start of a long video). With `short_side`, larger frames come scaled down by
the decoder's own colour conversion: no full-resolution RGB frame is made only to be shrunk later.
Backends register by name (`pyav`, `decord`); every failure is a `VideoDecodeError` naming the file
and the reason.
"""
from __future__ import annotations

import os
from typing import Optional

from errors import UserError
from video import decode_decord, decode_pyav  # noqa: F401  (importing registers the backends)
from video.decode_base import BACKENDS, VideoDecodeError, VideoReader, output_size

__all__ = ["BACKENDS", "VideoDecodeError", "VideoReader", "open_video", "output_size"]


def open_video(path: str | os.PathLike, backend: str = "pyav", num_threads: int = 1,
               short_side: Optional[int] = None) -> VideoReader:
    """Open `path` with the named backend, using `num_threads` decoder threads (0: decoder's choice);
    frames whose short side exceeds `short_side` are returned scaled down to it (aspect kept)."""
    if backend not in BACKENDS:
        raise UserError(f"unknown video backend '{backend}' (data.backend); choose from {sorted(BACKENDS)}")
    path = os.fspath(path)
    if not os.path.exists(path):
        raise VideoDecodeError(path, "no such file")
    if os.path.isdir(path):
        raise VideoDecodeError(path, "is a directory, not a video file")
    if os.path.getsize(path) == 0:
        raise VideoDecodeError(path, "the file is empty (0 bytes)")
    return BACKENDS[backend](path, num_threads, short_side)
