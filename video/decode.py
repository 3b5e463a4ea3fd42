"""Frame-accurate random access to video files behind one reader interface, with two backends.

`open_video(path, backend)` returns a `VideoReader` whose `get_frames(indices)` gives uint8 RGB frames
(N, H, W, 3) in the requested order. Frame `i` is the i-th frame in presentation order (what a plain
decode from the start yields). Each wanted frame is decoded once, starting from the nearest keyframe
before it (never from the start of a long video). With `short_side`, larger frames come scaled down by
the decoder's own colour conversion: no full-resolution RGB frame is made only to be shrunk later.
Backends register by name (`pyav`, `decord`); every failure is a `VideoDecodeError` naming the file
and the reason.
"""
from __future__ import annotations

import bisect
import itertools
import os
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Type

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from errors import UserError

VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v", ".flv")  # what folder scans pick up


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


def output_size(height: int, width: int, short_side: Optional[int]) -> Tuple[int, int]:
    """Frame size after scaling the short side down to `short_side` (never up)."""
    if short_side is None or min(height, width) <= short_side:
        return height, width
    factor = short_side / min(height, width)
    return max(1, round(height * factor)), max(1, round(width * factor))


def _first_line(exc: BaseException) -> str:
    """The readable reason of a decoder exception (FFmpeg's text without errno and path)."""
    reason = getattr(exc, "strerror", None) or str(exc).strip()
    lines = [line.strip() for line in reason.splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__


# A coded picture needs at least a start code or a length prefix; shorter packets are placeholders
# (e.g. the 1-byte "drop frame" chunks of some AVI files) that decode to no frame.
MIN_PICTURE_BYTES = 4


@dataclass
class PacketIndex:
    """What demuxing (no decoding) tells about a video stream: frame timestamps and restart points."""

    timestamps: List[int]  # presentation timestamps of the frames, sorted: frame i has timestamps[i]
    key_ordinals: List[int]  # frame index of each keyframe (and of the first frame), increasing
    packets: int  # packets carrying data, placeholders included (what a container header counts)


def scan_packets(container: av.container.InputContainer, stream: av.video.stream.VideoStream,
                 path: str, allow_truncated: bool = False) -> PacketIndex:
    """Demux the whole stream once; raise `VideoDecodeError` for damaged or frameless streams (and for
    truncated ones, whose header lists more frames than the file holds, unless `allow_truncated`)."""
    timestamps, key_timestamps, packets = [], [], 0
    try:
        for packet in container.demux(stream):
            if packet.size == 0:
                continue
            packets += 1
            pts = packet.pts if packet.pts is not None else packet.dts
            if pts is None or packet.size < MIN_PICTURE_BYTES:
                continue
            timestamps.append(pts)
            if packet.is_keyframe:
                key_timestamps.append(pts)
    except av.FFmpegError as exc:
        raise VideoDecodeError(path, f"damaged after {packets} packets ({_first_line(exc)})") from exc
    if not timestamps:
        raise VideoDecodeError(path, "contains no video frames")
    if stream.frames > packets and not allow_truncated:
        raise VideoDecodeError(path, f"truncated: the header lists {stream.frames} frames but only "
                                     f"{packets} are in the file")
    timestamps.sort()
    # the stream start is always a valid restart point, flagged or not
    key_ordinals = sorted({0} | {bisect.bisect_left(timestamps, pts) for pts in key_timestamps})
    return PacketIndex(timestamps, key_ordinals, packets)


def _open_container(path: str) -> Tuple[av.container.InputContainer, av.video.stream.VideoStream]:
    try:
        container = av.open(path)
    except (av.FFmpegError, UnicodeDecodeError) as exc:
        raise VideoDecodeError(path, f"not a readable video container ({_first_line(exc)})") from exc
    if not container.streams.video:
        container.close()
        raise VideoDecodeError(path, "has no video stream")
    return container, container.streams.video[0]


@register_backend("pyav")
class PyAVReader(VideoReader):
    """PyAV (FFmpeg) reader with a packet index built at open: exact frame count and keyframe map.

    Frames are located by presentation timestamp: the index is the sorted timestamps of the video
    packets, so containers without a frame count (mkv) or with a wrong one work alike. A seek goes to
    the last keyframe at or before the first wanted frame; the first decoded frame is placed by its
    timestamp and the following ones are counted in decoder output order (AVI timestamps of B-frames
    are guesses). When a stream yields fewer frames than its index (a damaged tail), frames past the
    real end repeat the last one (as decord does) and `num_frames` is corrected.
    """

    def __init__(self, path: str, num_threads: int = 1, short_side: Optional[int] = None,
                 allow_truncated: bool = False):
        super().__init__(path, short_side)
        self._container, self._stream = _open_container(path)
        self.header_frames = self._stream.frames  # what the container promises (0: not stated)
        try:
            self._index = scan_packets(self._container, self._stream, path, allow_truncated)
        except BaseException:
            self._container.close()
            raise
        context = self._stream.codec_context
        context.thread_count = num_threads
        context.thread_type = "AUTO" if num_threads != 1 else "SLICE"
        self.num_frames = len(self._index.timestamps)
        self.fps = self._frame_rate()
        self._height, self._width = output_size(context.height, context.width, short_side)
        self.frames_decoded = 0  # decoder output count, to check that seeking skips what it should
        self._to_rgb = VideoReformatter()  # reused: a fresh one per frame costs ~2 ms of set-up
        self._frames: Optional[Iterator[Tuple[int, av.VideoFrame]]] = None
        self._last: Optional[Tuple[int, av.VideoFrame]] = None

    def _frame_rate(self) -> float:
        for rate in (self._stream.average_rate, self._stream.guessed_rate, self._stream.base_rate):
            if rate and float(rate) > 0:
                return float(rate)
        stamps = self._index.timestamps
        span = (stamps[-1] - stamps[0]) * float(self._stream.time_base or 0)
        return (self.num_frames - 1) / span if span > 0 else 0.0

    @property
    def height(self) -> int:
        return self._height

    @property
    def width(self) -> int:
        return self._width

    def _decode_sorted(self, indices: np.ndarray) -> np.ndarray:
        out = np.empty((len(indices), self._height, self._width, 3), dtype=np.uint8)
        for slot, target in enumerate(indices.tolist()):
            frame = self._advance_to(target)
            height, width = output_size(frame.height, frame.width, self.short_side)
            out[slot] = self._to_rgb.reformat(frame, format="rgb24", width=width, height=height,
                                              interpolation="AREA").to_ndarray()
        return out

    def _advance_to(self, target: int) -> av.VideoFrame:
        """The decoded frame at ordinal `target`, seeking only when a keyframe lies in between."""
        if self._last is not None and self._last[0] == target:
            return self._last[1]
        if self._needs_seek(target):
            self._seek(target)
        for ordinal, frame in self._frames:
            self._last = (ordinal, frame)
            if ordinal >= target:
                return frame
        self._frames = iter(())
        if self._last is None:
            raise self._fail(f"frame {target} could not be decoded")
        self.num_frames = min(self.num_frames, self._last[0] + 1)  # the stream ended early
        return self._last[1]

    def _keyframe_before(self, target: int) -> int:
        return bisect.bisect_right(self._index.key_ordinals, target) - 1

    def _needs_seek(self, target: int) -> bool:
        if self._frames is None or self._last is None or target < self._last[0]:
            return True
        return self._index.key_ordinals[self._keyframe_before(target)] > self._last[0] + 1

    def _seek(self, target: int) -> None:
        """Restart decoding at the nearest keyframe before `target`, else one earlier, else the start.

        Containers seek by presentation time but some (AVI) only guess it, so the landing point is
        checked: the first decoded frame must be a keyframe at or before `target`.
        """
        nearest = self._keyframe_before(target)
        for key in dict.fromkeys((nearest, max(nearest - 1, 0), 0)):
            key_ordinal = self._index.key_ordinals[key]
            self._container.seek(self._index.timestamps[key_ordinal], stream=self._stream, backward=True)
            frames = self._decoded_frames(key_ordinal)
            first = next(frames, None)
            if first is not None and first[0] <= target and (first[1].key_frame or key == 0):
                self._frames = itertools.chain([first], frames)
                self._last = None
                return
        raise self._fail(f"cannot seek to frame {target}: no decodable keyframe before it")

    def _decoded_frames(self, seek_ordinal: int) -> Iterator[Tuple[int, av.VideoFrame]]:
        """(ordinal, frame) from the current position; the first frame is placed by its timestamp."""
        ordinal = None
        try:
            for packet in self._container.demux(self._stream):
                for frame in packet.decode():
                    self.frames_decoded += 1
                    if ordinal is not None:
                        ordinal += 1
                    elif frame.pts is not None:
                        ordinal = bisect.bisect_left(self._index.timestamps, frame.pts)
                    else:
                        ordinal = seek_ordinal
                    yield ordinal, frame
        except av.FFmpegError as exc:
            raise self._fail(f"decoding failed after frame {ordinal} ({_first_line(exc)})") from exc

    def close(self) -> None:
        self._frames, self._last = None, None
        self._container.close()


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
    container, stream = _open_container(path)
    with container:
        context = stream.codec_context
        size = (context.height, context.width)
        if not (is_avi and context.has_b_frames):
            return size, None
        return size, len(scan_packets(container, stream, path).timestamps)


def _decord_reason(exc: BaseException) -> str:
    """decord's messages carry a timestamp and a C++ source location; keep the readable part."""
    text = re.sub(r"^\[[\d:]+\]\s*\S+:\d+:\s*", "", _first_line(exc))
    text = re.sub(r"^(ERROR|Error:|Check failed:.*?ERROR)\s*", "", text)
    return text if not text.startswith("Error reading") else "invalid or unsupported data"
