"""Where each frame goes in streams whose timestamps are guesses (AVI with B-frames), learned once per file.

AVI stores no presentation times, so around B-frames FFmpeg's timestamps do not tell a decoded frame's
place; the PyAV reader then counts decoded frames, which forbids skipping any. The decoder does tag each
frame with the timestamp of the packet it came from, so one decode of every frame tells each timestamp's
place in presentation order. Kept here per file version and process (a loader worker sees the same files
every epoch), it lets later reads skip unwanted non-reference frames and still place every frame exactly.
"""
from __future__ import annotations

import os
from collections import OrderedDict
from typing import Dict, Optional, Tuple

import numpy as np

FileKey = Tuple[str, int, int]  # path, size, mtime: a rewritten file is learned anew
FRAMES_KEPT = 1 << 21  # per process, all files together (12 bytes a frame: at most ~24 MiB)

_orders: "OrderedDict[FileKey, Tuple[np.ndarray, np.ndarray]]" = OrderedDict()  # timestamps, ordinals
_frames_kept = 0


def file_key(path: str) -> FileKey:
    status = os.stat(path)
    return path, status.st_size, status.st_mtime_ns


def known_order(key: FileKey) -> Optional[Dict[int, int]]:
    """timestamp -> frame ordinal of a learned file, or None."""
    if key not in _orders:
        return None
    _orders.move_to_end(key)
    timestamps, ordinals = _orders[key]
    return dict(zip(timestamps.tolist(), ordinals.tolist()))


def remember_order(key: FileKey, order: Dict[int, int], num_frames: int) -> bool:
    """Keep `order` if it places each of the `num_frames` frames exactly once; the least recently used
    files are dropped past `FRAMES_KEPT`."""
    global _frames_kept
    if len(order) != num_frames or set(order.values()) != set(range(num_frames)) or num_frames > FRAMES_KEPT:
        return False
    forget_order(key)
    _orders[key] = (np.fromiter(order.keys(), np.int64, num_frames), np.fromiter(order.values(), np.int32, num_frames))
    _frames_kept += num_frames
    while _frames_kept > FRAMES_KEPT:
        forget_order(next(iter(_orders)))
    return True


def forget_order(key: FileKey) -> None:
    global _frames_kept
    if key in _orders:
        _frames_kept -= len(_orders.pop(key)[0])
