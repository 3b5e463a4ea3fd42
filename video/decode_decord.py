"""The decord backend; a cheap PyAV probe finds the AVI files whose seeking decord gets wrong."""
from __future__ import annotations

import re
from typing import List, Optional, Tuple

import numpy as np

from video.decode_base import VideoReader, first_line, output_size, register_backend
from video.decode_pyav import open_container, scan_packets

@register_backend("decord")
class DecordReader(VideoReader):
    """decord reader; decord builds its own frame index at open and seeks to keyframes itself.

    decord's seeking is wrong in AVI files with B-frames, where AVI's timestamps are guesses: it
    counts placeholder packets ("drop frame" chunks) as frames and addresses later frames off by up
    to 5 (HMDB51 files), and near the end it sometimes returns the previous frame (about 1 read in
    20 on the shared 1080p AVI). For those files, found with a cheap PyAV probe of AVI files only,
    frames are read in consecutive batches from the start, which decord gets right. With
    `short_side`, the same probe gives the size that decord is asked to scale to as it converts.
    """

    FORWARD_BATCH_BYTES = 64 << 20  # bounds memory of the forward pass on large frames
    # decord 0.6.0 returns 4-channel frames at these output widths and then fails to copy them
    BROKEN_WIDTHS = (24, 48, 72)

    def __init__(self, path: str, num_threads: int = 1, short_side: Optional[int] = None):
        super().__init__(path, short_side)
        import decord  # imported here: optional at import time of this module

        source_size, real_count = _probe_for_decord(path, need_size=short_side is not None)
        self._shape: Optional[Tuple[int, int]] = None
        scale = {}
        if source_size is not None:
            height, width = output_size(*source_size, short_side)
            if (height, width) != source_size:
                width += 2 if width in self.BROKEN_WIDTHS else 0
                scale = {"height": height, "width": width}
            self._shape = (height, width)
        try:
            self._reader = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=num_threads, **scale)
        except (decord.DECORDError, RuntimeError, AssertionError) as exc:
            raise self._fail(f"decord cannot open it ({_decord_reason(exc)})") from exc
        self.num_frames = len(self._reader)
        self.fps = float(self._reader.get_avg_fps())
        self.forward_only = real_count is not None  # True: frames come from batches read from frame 0
        if real_count is not None:
            self.num_frames = min(self.num_frames, real_count)

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
        import decord

        try:
            frames = self._forward_pass(indices) if self.forward_only else self._batch(indices.tolist())
        except (decord.DECORDError, RuntimeError) as exc:
            raise self._fail(f"decord failed to decode frames {indices.tolist()[:4]}... "
                             f"({_decord_reason(exc)})") from exc
        self._shape = frames.shape[1:3]
        return frames

    def _batch(self, indices: List[int]) -> np.ndarray:
        return self._reader.get_batch(indices).asnumpy()

    def _forward_pass(self, indices: np.ndarray) -> np.ndarray:
        """Wanted frames from consecutive batches starting at frame 0 (decord does not seek)."""
        height, width = self._shape
        step = max(1, self.FORWARD_BATCH_BYTES // (height * width * 3))
        end = int(indices[-1]) + 1
        chunks = []
        for start in range(0, end, step):
            stop = min(start + step, end)
            wanted = indices[(indices >= start) & (indices < stop)]
            chunks.append(self._batch(list(range(start, stop)))[wanted - start])
        return np.concatenate(chunks)

    def close(self) -> None:
        self._reader = None


def _probe_for_decord(path: str, need_size: bool) -> Tuple[Optional[Tuple[int, int]], Optional[int]]:
    """(height, width) when asked for or when probing anyway, and the real frame count of an AVI file
    with B-frames (None for any other file). Opens PyAV only for AVI files or when the size is needed."""
    with open(path, "rb") as file:
        head = file.read(12)
    is_avi = head[:4] == b"RIFF" and head[8:12] == b"AVI "
    if not (is_avi or need_size):
        return None, None
    container, stream = open_container(path)
    with container:
        context = stream.codec_context
        size = (context.height, context.width)
        if not (is_avi and context.has_b_frames):
            return size, None
        return size, len(scan_packets(container, stream, path).timestamps)


def _decord_reason(exc: BaseException) -> str:
    """decord's messages carry a timestamp and a C++ source location; keep the readable part."""
    text = re.sub(r"^\[[\d:]+\]\s*\S+:\d+:\s*", "", first_line(exc))
    text = re.sub(r"^(ERROR|Error:|Check failed:.*?ERROR)\s*", "", text)
    return text if not text.startswith("Error reading") else "invalid or unsupported data"
