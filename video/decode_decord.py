"""The decord backend; a cheap PyAV probe finds the files the PyAV reader reads instead: the AVI files whose
seeking decord gets wrong, and, unscaled, the files where it returns the same frames for less work."""
from __future__ import annotations

import os
import re
from functools import lru_cache
from typing import NamedTuple, Optional, Tuple

import numpy as np

from video.decode_base import VideoReader, first_line, output_size, register_backend
from video.decode_pyav import PyAVReader, open_container


@register_backend("decord")
class DecordReader(VideoReader):
    """decord reader; decord builds its own frame index at open and seeks to keyframes itself.

    Two kinds of file, found with a cheap PyAV probe (once per file and process), are read by the PyAV
    reader instead (`via_pyav`):
    - AVI files with B-frames, where AVI's timestamps are guesses and decord's seeking is wrong: it
      counts placeholder packets ("drop frame" chunks) as frames and addresses later frames off by up
      to 5 (HMDB51 files), and near the end it sometimes returns the previous frame (about 1 read in
      20 on the shared 1080p AVI). The PyAV reader seeks in them exactly.
    - when no scaling is asked for, other streams with B-frames, and AVI files: decord decodes every
      frame between a keyframe and a wanted one where the PyAV reader skips the unwanted non-reference
      frames (1.2-2x less time on the shared clips), and a decord seek in an AVI file costs about 15 ms
      (as much as decoding 80 frames of the KTH clips). Unscaled, both return the frames of a plain
      decode, bit for bit; scaled, decord's own scaler is kept, so the decord backend's frames stay
      decord's.
    With `short_side`, the probe gives the size decord is asked to scale to.
    """

    # decord 0.6.0 returns 4-channel frames at these output widths and then fails to copy them
    BROKEN_WIDTHS = (24, 48, 72)

    def __init__(self, path: str, num_threads: int = 1, short_side: Optional[int] = None):
        super().__init__(path, short_side)
        probe = _probe_for_decord(path)
        unscaled = output_size(*probe.size, short_side) == probe.size
        self.via_pyav = (probe.is_avi and probe.b_frames) or (unscaled and (probe.b_frames or probe.is_avi))
        self._shape: Optional[Tuple[int, int]] = None
        self._reader = (PyAVReader(path, num_threads, short_side) if self.via_pyav
                        else self._open_decord(num_threads, probe.size))
        if self.via_pyav:
            self.num_frames, self.fps = self._reader.num_frames, self._reader.fps
            self._shape = (self._reader.height, self._reader.width)
        else:
            self.num_frames, self.fps = len(self._reader), float(self._reader.get_avg_fps())

    def _open_decord(self, num_threads: int, source_size: Tuple[int, int]):
        import decord  # imported here: optional at import time of this module

        scale = {}
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


class Probe(NamedTuple):
    """What the decord backend needs to know of a file before choosing its reader."""

    size: Tuple[int, int]  # (height, width) of the coded frames
    b_frames: bool  # the stream has B-frames (the decoder reorders frames)
    is_avi: bool


PROBES_KEPT = 1 << 18  # per process; a probe is a few numbers, so even Kinetics fits


@lru_cache(maxsize=PROBES_KEPT)
def _cached_probe(path: str, size: int, modified_ns: int) -> Probe:
    """The probe of one version of a file (size and mtime in the key: a rewritten file is probed anew)."""
    with open(path, "rb") as file:
        head = file.read(12)
    is_avi = head[:4] == b"RIFF" and head[8:12] == b"AVI "
    container, stream = open_container(path)
    with container:
        context = stream.codec_context
        return Probe((context.height, context.width), bool(context.has_b_frames), is_avi)


def _probe_for_decord(path: str) -> Probe:
    """The file's probe: a PyAV open (no frame decoded), once per file and process (a loader worker sees
    the same videos every epoch: decord's open is then the only one)."""
    status = os.stat(path)
    return _cached_probe(path, status.st_size, status.st_mtime_ns)


def _decord_reason(exc: BaseException) -> str:
    """decord's messages carry a timestamp and a C++ source location; keep the readable part."""
    text = re.sub(r"^\[[\d:]+\]\s*\S+:\d+:\s*", "", first_line(exc))
    text = re.sub(r"^(ERROR|Error:|Check failed:.*?ERROR)\s*", "", text)
    return text if not text.startswith("Error reading") else "invalid or unsupported data"
