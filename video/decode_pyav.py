"""The PyAV (FFmpeg) backend: a packet index built by demuxing, keyframe seeks, frames placed by timestamp."""
from __future__ import annotations

import bisect
import itertools
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional, Tuple

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from video.decode_base import VideoDecodeError, VideoReader, first_line, output_size, register_backend
from video.display_order import file_key, forget_order, known_order, remember_order

# A coded picture needs at least a start code or a length prefix; shorter packets are placeholders
# (e.g. the 1-byte "drop frame" chunks of some AVI files) that decode to no frame.
MIN_PICTURE_BYTES = 4
LEARN_TAIL = 0.25  # fraction of a file decoded past the last wanted frame to learn its display order


class _OrderMismatch(Exception):
    """A decoded frame the learned display order does not place: the read is redone by counting."""


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
        raise VideoDecodeError(path, f"damaged after {packets} packets ({first_line(exc)})") from exc
    if not timestamps:
        raise VideoDecodeError(path, "contains no video frames")
    if stream.frames > packets and not allow_truncated:
        raise VideoDecodeError(path, f"truncated: the header lists {stream.frames} frames but only "
                                     f"{packets} are in the file")
    timestamps.sort()
    # the stream start is always a valid restart point, flagged or not
    key_ordinals = sorted({0} | {bisect.bisect_left(timestamps, pts) for pts in key_timestamps})
    return PacketIndex(timestamps, key_ordinals, packets)


def open_container(path: str) -> Tuple[av.container.InputContainer, av.video.stream.VideoStream]:
    try:
        container = av.open(path)
    except (av.FFmpegError, UnicodeDecodeError) as exc:
        raise VideoDecodeError(path, f"not a readable video container ({first_line(exc)})") from exc
    if not container.streams.video:
        container.close()
        raise VideoDecodeError(path, "has no video stream")
    return container, container.streams.video[0]


@register_backend("pyav")
class PyAVReader(VideoReader):
    """PyAV (FFmpeg) reader with a packet index built at open: exact frame count and keyframe map.

    Frames are located by presentation timestamp: the index is the sorted timestamps of the video
    packets, so containers without a frame count (mkv) or with a wrong one work alike. A seek goes to
    the last keyframe at or before the first wanted frame. Where timestamps are exact (every container
    but AVI with B-frames, whose B-frame timestamps are guesses), each decoded frame is placed by its
    timestamp and the decoder skips the non-reference frames that are not wanted (`skip_frame`): no
    later frame depends on them, so the wanted ones come out the same, 30-60% cheaper on B-frame
    streams. Elsewhere the first decoded frame is placed by its timestamp and the following ones are
    counted in decoder output order, every frame decoded, until reads that decoded every frame have
    taught the file's display order (video/display_order.py; a read that ends within the last quarter
    of the file decodes the rest to learn it): from then on frames are placed by it and skipped as
    above. When a stream yields fewer frames than its
    index (a damaged tail), frames past the real end repeat the last one (as decord does) and
    `num_frames` is corrected.
    """

    def __init__(self, path: str, num_threads: int = 1, short_side: Optional[int] = None,
                 allow_truncated: bool = False):
        super().__init__(path, short_side)
        self._container, self._stream = open_container(path)
        try:
            self._index = scan_packets(self._container, self._stream, path, allow_truncated)
        except BaseException:
            self._container.close()
            raise
        # the frames the container promises (0: not stated); its count includes the placeholder packets,
        # which are no frames: a file is truncated only when frames are missing beyond those
        placeholders = self._index.packets - len(self._index.timestamps)
        self.header_frames = max(self._stream.frames - placeholders, 0)
        context = self._stream.codec_context
        context.thread_count = num_threads
        context.thread_type = "AUTO" if num_threads != 1 else "SLICE"
        self.num_frames = len(self._index.timestamps)
        self.fps = self._frame_rate()
        self._height, self._width = output_size(context.height, context.width, short_side)
        # AVI stores no presentation times: FFmpeg guesses them, wrongly around B-frames
        exact_pts = not (self._container.format.name == "avi" and context.has_b_frames)
        self._exact = exact_pts
        self._key = None if exact_pts else file_key(path)
        # where timestamps are guesses: the learned timestamp -> ordinal (None: frames are counted, and
        # `_learning` collects what the counting shows)
        self._order: Optional[Dict[int, int]] = None if exact_pts else known_order(self._key)
        self._learning: Optional[Dict[int, int]] = {} if not self._placed_by_timestamp() else None
        self._wanted: frozenset = frozenset()  # ordinals the current get_frames call needs decoded
        self._last_wanted = -1
        self.frames_decoded = 0  # decoder output count, to check that seeking skips what it should
        self._to_rgb = VideoReformatter()  # reused: a fresh one per frame costs ~2 ms of set-up
        # the scaler's threads too (its default, one per core, costs 2-8 ms a frame on a busy machine)
        self._threads = num_threads
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

    def _placed_by_timestamp(self) -> bool:
        return self._exact or self._order is not None

    def _ordinal_of(self, pts: int) -> Optional[int]:
        """The frame ordinal of a timestamp (exact, or learned: None for one the order does not know)."""
        return bisect.bisect_left(self._index.timestamps, pts) if self._exact else self._order.get(pts)

    def _decode_sorted(self, indices: np.ndarray) -> np.ndarray:
        try:
            out = self._decode_targets(indices)
        except _OrderMismatch:  # not seen on real files; a safe way back
            forget_order(self._key)
            self._order, self._learning, self._frames, self._last = None, None, None, None
            self._stream.codec_context.skip_frame = "DEFAULT"
            return self._decode_targets(indices)
        if self._learning is not None:
            self._learn_order()
        return out

    def _learn_order(self) -> None:
        """When this reader placed every frame from the first to the current one and little is left, decode
        the rest and keep the order: from then on frames are placed by timestamp."""
        if self._last is None or len(self._learning) != self._last[0] + 1:
            return  # frames before those decoded were never seen: decoding the rest would not complete it
        if self.num_frames - 1 - self._last[0] <= LEARN_TAIL * self.num_frames:
            try:
                for self._last in self._frames:
                    pass
            except VideoDecodeError:
                self._learning = None
                return
        if self._learning is not None and remember_order(self._key, self._learning, self.num_frames):
            self._order, self._learning = known_order(self._key), None

    def _decode_targets(self, indices: np.ndarray) -> np.ndarray:
        out = np.empty((len(indices), self._height, self._width, 3), dtype=np.uint8)
        targets = indices.tolist()
        self._wanted, self._last_wanted = frozenset(targets), targets[-1]
        for slot, target in enumerate(targets):
            frame = self._advance_to(target)
            height, width = output_size(frame.height, frame.width, self.short_side)
            out[slot] = self._to_rgb.reformat(frame, format="rgb24", width=width, height=height,
                                              interpolation="AREA", threads=self._threads).to_ndarray()
        return out

    def _advance_to(self, target: int, retried: bool = False, force_seek: bool = False) -> av.VideoFrame:
        """The decoded frame at ordinal `target`, seeking only when a keyframe lies in between."""
        if self._last is not None and self._last[0] == target:
            return self._last[1]
        if force_seek or self._needs_seek(target):
            self._seek(target)
        for ordinal, frame in self._frames:
            self._last = (ordinal, frame)
            if ordinal >= target:
                if ordinal > target and self._placed_by_timestamp() and not retried:
                    # skipped while an earlier call, wanting later frames, read ahead: decode it again, wanted now
                    return self._advance_to(target, retried=True, force_seek=True)
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
            self._learning = None  # a frame placed from a landing that proved wrong: learn nothing
        raise self._fail(f"cannot seek to frame {target}: no decodable keyframe before it")

    def _decoded_frames(self, seek_ordinal: int) -> Iterator[Tuple[int, av.VideoFrame]]:
        """(ordinal, frame) from the current position; the first frame is placed by its timestamp."""
        ordinal = None
        context = self._stream.codec_context
        placed = self._placed_by_timestamp()
        packets = self._container.demux(self._stream)
        try:
            packet = next(packets, None)
            while packet is not None:
                following = next(packets, None)  # one packet ahead: see `_may_skip`
                if placed:
                    context.skip_frame = "NONREF" if self._may_skip(packet, following) else "DEFAULT"
                for frame in packet.decode():
                    self.frames_decoded += 1
                    if placed and frame.pts is not None:
                        ordinal = self._ordinal_of(frame.pts)
                        if ordinal is None:
                            raise _OrderMismatch()
                    elif ordinal is not None:
                        ordinal += 1
                    elif frame.pts is not None:
                        ordinal = bisect.bisect_left(self._index.timestamps, frame.pts)
                    else:
                        ordinal = seek_ordinal
                    if self._learning is not None and not placed:
                        if frame.pts is None or self._learning.setdefault(frame.pts, ordinal) != ordinal:
                            self._learning = None  # these timestamps cannot teach the display order
                    yield ordinal, frame
                packet = following
        except av.FFmpegError as exc:
            raise self._fail(f"decoding failed after frame {ordinal} ({first_line(exc)})") from exc

    def _may_skip(self, packet: av.Packet, following: Optional[av.Packet]) -> bool:
        """Whether the decoder may drop `packet`'s picture if no other depends on it (a non-reference one):
        it is not wanted and comes before the last wanted frame (a next call may want those past it); in a
        stream whose order was learned, also the packet after it is not wanted (in MPEG-4 part 2 AVI files
        a not-coded picture repeats the one decoded before it, and a B-picture packed with the previous
        P-picture is decoded with the next packet)."""
        ordinal = self._ordinal_of(packet.pts) if packet.pts is not None else None
        if ordinal is None or ordinal >= self._last_wanted or ordinal in self._wanted:
            return False
        if self._exact:
            return True
        return (following is not None and following.pts is not None
                and self._ordinal_of(following.pts) not in self._wanted)

    def close(self) -> None:
        self._frames, self._last = None, None
        self._container.close()
