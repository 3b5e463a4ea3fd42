"""How much a loader worker's memory grows per 1000 decodes, per backend, with and without the per-video
child process of `data.decode_timeout`: each measurement runs in a fresh forked process that decodes
the given videos round-robin (training sampling, the demo's short side) and reads its resident set size
from /proc after a warm-up pass and at the end."""
from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np

from video.config import DataConfig
from video.decode import VideoDecodeError
from video.safe_read import read_clips

PAGE = os.sysconf("SC_PAGE_SIZE")


def resident_bytes() -> int:
    """This process's resident set size (Linux /proc)."""
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * PAGE


def _decode_loop(videos: Sequence[str], cfg: DataConfig, decodes: int, short_side: int) -> Dict:
    rng = np.random.default_rng(0)

    def one(number: int) -> None:
        try:
            read_clips(videos[number % len(videos)], cfg, rng, short_side=short_side)
        except VideoDecodeError:
            pass  # a broken file decodes nothing but still counts as a decode

    for number in range(len(videos)):  # warm-up: every file once, caches and pools filled
        one(number)
    start = resident_bytes()
    for number in range(decodes):
        one(number)
    end = resident_bytes()
    return {"rss_start_bytes": start, "rss_end_bytes": end,
            "growth_bytes_per_1000": (end - start) * 1000 / decodes}


def measure(videos: Sequence[str], cfg: DataConfig, decodes: int, short_side: int) -> Dict:
    """`_decode_loop` in a fresh forked process (so earlier measurements do not count)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        try:
            result = _decode_loop(videos, cfg, decodes, short_side)
            with os.fdopen(write_end, "wb") as handle:
                handle.write(pickle.dumps(result))
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as handle:
        data = handle.read()
    os.waitpid(pid, 0)
    if not data:
        raise RuntimeError("the measuring process died")
    return pickle.loads(data)
