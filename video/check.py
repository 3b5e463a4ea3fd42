"""Check a dataset folder before training: decode every listed video as training would (the same
backend, sampling, transform and time limit), in parallel, and sort out what training would skip.

Categories: `unreadable` (any decode or transform failure, time-outs included), `too_short` (truncated
below one clip), `truncated` (the header promises more frames than decode; training uses the rest),
`header_mismatch` (the frame count differs from the header's in another way: informational). A video
that passes also trains; `write_clean_split` drops the ones training would skip.
"""
from __future__ import annotations

import csv
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Dict, Iterator, List, Optional

import av
import numpy as np

from video.config import DataConfig
from video.dataset import VideoDataset
from video.decode import VideoDecodeError
from video.safe_read import TooShortError

_dataset: Optional[VideoDataset] = None  # one per checking process, set by _start


def _start(root: str, split: str, cfg: DataConfig) -> None:
    global _dataset
    _dataset = VideoDataset(root, split, cfg, train=True)


def header_frames(path: str) -> int:
    """The frame count the container header states (0: none stated or unreadable)."""
    try:
        with av.open(path) as container:
            return container.streams.video[0].frames if container.streams.video else 0
    except (av.FFmpegError, OSError, UnicodeDecodeError):
        return 0


def check_video(index: int, seed: int = 0) -> Dict:
    """One video of the dataset: {"index", "path", "status", "reason", "frames", "header_frames"}."""
    path, _ = _dataset.samples[index]
    row = {"index": index, "path": path, "status": "ok", "reason": None, "frames": None,
           "header_frames": header_frames(path)}
    try:
        _, _, read = _dataset.decode_train_clip(index, np.random.default_rng([seed, index]))
    except TooShortError as exc:
        return {**row, "status": "too_short", "reason": exc.reason}
    except VideoDecodeError as exc:
        return {**row, "status": "unreadable", "reason": exc.reason}
    row["frames"] = read.num_frames
    if read.truncated:
        return {**row, "status": "truncated", "reason": read.truncated.split(": ", 1)[1]}
    if row["header_frames"] and row["header_frames"] != read.num_frames:
        return {**row, "status": "header_mismatch",
                "reason": f"the header lists {row['header_frames']} frames, {read.num_frames} are in the file"}
    return row


def _check_all(count: int, root: Path, split: str, cfg: DataConfig, workers: int) -> Iterator[Dict]:
    if workers <= 1:
        _start(str(root), split, cfg)
        yield from map(check_video, range(count))
        return
    with ProcessPoolExecutor(workers, initializer=_start, initargs=(str(root), split, cfg)) as pool:
        yield from pool.map(check_video, range(count), chunksize=4)


SKIPPED_BY_TRAINING = ("unreadable", "too_short")
CATEGORIES = ("unreadable", "too_short", "truncated", "header_mismatch")


def check_dataset(root: Path, split: str, cfg: DataConfig, workers: int, progress=None) -> Dict:
    """The report of every video listed in `root/<split>.csv`: counts and one list per category."""
    count = len(VideoDataset(root, split, cfg, train=True))  # validates the folder in this process
    rows: List[Dict] = []
    for row in _check_all(count, root, split, cfg, workers):
        rows.append(row)
        if progress is not None:
            progress(row)
    report = {"root": str(root), "split": split, "backend": cfg.backend, "decode_timeout": cfg.decode_timeout,
              "videos": len(rows), "ok": sum(row["status"] == "ok" for row in rows)}
    for category in CATEGORIES:
        report[category] = [{key: row[key] for key in ("path", "reason", "frames", "header_frames")}
                            for row in rows if row["status"] == category]
    report["rows"] = rows
    return report


def write_clean_split(root: Path, split: str, report: Dict) -> Path:
    """`root/<split>_clean.csv`: the rows of `<split>.csv` without the videos training would skip."""
    bad = {row["index"] for row in report["rows"] if row["status"] in SKIPPED_BY_TRAINING}
    with open(root / f"{split}.csv", newline="") as file:
        rows = list(csv.reader(file))
    target = root / f"{split}_clean.csv"
    partial = target.with_name(f".{target.name}.tmp")
    with open(partial, "w", newline="") as file:
        csv.writer(file).writerows([rows[0]] + [row for number, row in enumerate(rows[1:]) if number not in bad])
    os.replace(partial, target)
    return target
