"""The decord backend; a cheap PyAV probe finds the AVI files whose seeking decord gets wrong (read by PyAV)."""
from __future__ import annotations

import os
import re
from functools import lru_cache
from typing import Optional, Tuple

import numpy as np

from video.decode_base import VideoReader, first_line, output_size, register_backend
from video.decode_pyav import PyAVReader, open_container


@register_backend("decord")
class DecordReader(VideoReader):
    """decord reader; decord builds its own frame index at open and seeks to keyframes itself.

    decord's seeking is wrong in AVI files with B-frames, where AVI's timestamps are guesses: it
    counts placeholder packets ("drop frame" chunks) as frames and addresses later frames off by up
    to 5 (HMDB51 files), and near the end it sometimes returns the previous frame (about 1 read in
    20 on the shared 1080p AVI). Those files, found with a cheap PyAV probe of AVI files only, are
    read by the PyAV reader instead (`via_pyav`), which seeks in them exactly and returns the same
    frames as a decode from the start (earlier versions read them with decord from frame 0 on every
    call, converting every frame on the way). With `short_side`, the probe gives the size decord is
    asked to scale to.
    """

    # decord 0.6.0 returns 4-channel frames at these output widths and then fails to copy them
    BROKEN_WIDTHS = (24, 48, 72)

    def __init__(self, path: str, num_threads: int = 1, short_side: Optional[int] = None):
        super().__init__(path, short_side)
        source_size, avi_with_b_frames = _probe_for_decord(path, need_size=short_side is not None)
        self.via_pyav = avi_with_b_frames
        self._shape: Optional[Tuple[int, int]] = None
        self._reader = (PyAVReader(path, num_threads, short_side) if avi_with_b_frames
                        else self._open_decord(num_threads, source_size))
        if self.via_pyav:
            self.num_frames, self.fps = self._reader.num_frames, self._reader.fps
            self._shape = (self._reader.height, self._reader.width)
        else:
            self.num_frames, self.fps = len(self._reader), float(self._reader.get_avg_fps())

    def _open_decord(self, num_threads: int, source_size: Optional[Tuple[int, int]]):
        import decord  # imported here: optional at import time of this module

        scale = {}
        if source_size is not None:
            height, width = output_size(*source_size, self.short_side)
            if (height, width) != source_size:
                width += 2 if width in self.BROKEN_WIDTHS else 0
                scale = {"height": height, "width": width}
            self._shape = (height, width)
        try:
            return decord.VideoReader(self.path, ctx=decord.cpu(0), num_threads=num_threads, **scale)
        except (decord.DECORDError, RuntimeError, AssertionError) as exc:
            raise self._fail(f"decord cannot open it ({_decord_reason(exc)})") from exc

    def _frame_shape(self) -> Tuple[int, int]:
        if self._shape is None:
            self._decode_sorted(np.zeros(1, dtype=np.int64))
        return self._shape

    @property
    def height(self) -> int:
        return self._frame_shape()[0]

    @property
    def width(self) -> int:
        return self._frame_shape()[1]

    def _decode_sorted(self, indices: np.ndarray) -> np.ndarray:
        if self.via_pyav:
            return self._reader.get_frames(indices)
        import decord

        try:
            frames = self._reader.get_batch(indices.tolist()).asnumpy()
        except (decord.DECORDError, RuntimeError) as exc:
            raise self._fail(f"decord failed to decode frames {indices.tolist()[:4]}... "
                             f"({_decord_reason(exc)})") from exc
        self._shape = frames.shape[1:3]
        return frames

    def close(self) -> None:
        if self.via_pyav:
            self._reader.close()
        self._reader = None


Probe = Tuple[Optional[Tuple[int, int]], bool]
PROBES_KEPT = 1 << 18  # per process; a probe is a few numbers, so even Kinetics fits


@lru_cache(maxsize=PROBES_KEPT)
def _cached_probe(path: str, size: int, modified_ns: int, need_size: bool) -> Probe:
    """The probe of one version of a file (size and mtime in the key: a rewritten file is probed anew)."""
    with open(path, "rb") as file:
        head = file.read(12)
    is_avi = head[:4] == b"RIFF" and head[8:12] == b"AVI "
    if not (is_avi or need_size):
        return None, False
    container, stream = open_container(path)
    with container:
        context = stream.codec_context
        return (context.height, context.width), bool(is_avi and context.has_b_frames)


def _probe_for_decord(path: str, need_size: bool) -> Probe:
    """(height, width) when asked for or when probing anyway, and whether the file is an AVI with
    B-frames. Opens PyAV only for AVI files or when the size is needed, once per file and process
    (a loader worker sees the same videos every epoch: decord's open is then the only one)."""
    status = os.stat(path)
    return _cached_probe(path, status.st_size, status.st_mtime_ns, need_size)


def _decord_reason(exc: BaseException) -> str:
    """decord's messages carry a timestamp and a C++ source location; keep the readable part."""
    text = re.sub(r"^\[[\d:]+\]\s*\S+:\d+:\s*", "", first_line(exc))
    text = re.sub(r"^(ERROR|Error:|Check failed:.*?ERROR)\s*", "", text)
    return text if not text.startswith("Error reading") else "invalid or unsupported data"
