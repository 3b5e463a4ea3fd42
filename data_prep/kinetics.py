"""`run.py prep kinetics`: a dataset folder from Kinetics annotations and a folder of downloaded videos.

Input annotations: the official CSV (`label,youtube_id,time_start,time_end,split`) or an
mmaction-style list (`path label` per line, paths relative to `--videos`). Kinetics videos are found
anywhere under `--videos` as `{youtube_id}_{start:06d}_{end:06d}.<ext>` (already cut, as the common
downloaders name them) or `{youtube_id}.<ext>` (the whole video: cut to the annotated window here).
Each chosen video is decoded (which verifies it), resized to `--short-side` (never enlarged), and
re-encoded to H.264 with a keyframe every `prep.kinetics.keyframe_interval` frames so that seeking is
cheap; in parallel with `--workers`. Finished outputs are kept, so an interrupted run resumes.
Writes `labels.txt`, `<split>.csv` and `prep_report.json` (written, skipped with reasons, missing ids).
With `--shard i/N` only shard i of N of the chosen entries is processed (a fixed split by the hash of
each entry's key, the same on every machine); `prep merge` joins the N folders into one.
"""
from __future__ import annotations

import csv
import json
import os
import re
import stat
import zlib
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

import av
from tqdm import tqdm

from errors import UserError
from video.dataset import read_labels
from video.decode import VideoDecodeError, open_video
from video.files import VIDEO_SUFFIXES
from video.encode import VideoWriter

SPLIT_NAMES = {"train": "train", "training": "train", "val": "val", "validate": "val", "validation": "val",
               "test": "test", "testing": "test"}


@dataclass(frozen=True)
class Entry:
    """One annotated video: where it is expected, its class, split and (for whole videos) window."""

    key: str  # youtube id, or the list's path: what `missing` reports
    label: str
    split: str
    source: Optional[Path]  # None when no file was found
    window: Optional[Tuple[float, float]]  # seconds to keep; None keeps the whole file


@dataclass(frozen=True)
class Options:
    short_side: int
    keyframe_interval: int
    crf: int


# ---- reading annotations ----

def _split_name(text: str, where: str) -> str:
    if text.strip().lower() not in SPLIT_NAMES:
        raise UserError(f"{where}: unknown split '{text}' (expected one of {sorted(set(SPLIT_NAMES))})")
    return SPLIT_NAMES[text.strip().lower()]


def unreadable_reason(path: Path) -> Optional[str]:
    """Why `path` is not a readable regular file (a directory, a broken link, a fifo, a device, no read
    permission), or None when it is one. Checked before any decoder opens it: opening a fifo blocks."""
    if path.is_symlink() and not path.exists():
        return f"a broken symbolic link (to {os.readlink(path)})"
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        return f"cannot be examined ({exc.strerror})"
    kinds = {stat.S_ISDIR: "a directory", stat.S_ISFIFO: "a named pipe (fifo)", stat.S_ISSOCK: "a socket",
             stat.S_ISCHR: "a character device", stat.S_ISBLK: "a block device"}
    for is_kind, kind in kinds.items():
        if is_kind(mode):
            return f"{kind}, not a regular video file"
    try:
        with open(path, "rb"):
            return None
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"


def _index_videos(folder: Path) -> Dict[str, Path]:
    """Entries under `folder` with a video extension, by name without extension (the first one found
    wins); directories, links and fifos named like videos too, so that they are reported."""
    found: Dict[str, Path] = {}
    for directory, subdirectories, names in os.walk(folder):
        for name in sorted(names + subdirectories):
            path = Path(directory) / name
            if path.suffix.lower() in VIDEO_SUFFIXES:
                found.setdefault(path.stem, path)
    return found


def _kinetics_entries(path: Path, videos: Path, rows: List[Dict[str, str]]) -> Iterator[Entry]:
    files = _index_videos(videos)
    for line, row in enumerate(rows, start=2):
        where = f"{path}:{line}"
        try:
            youtube_id, start, end = row["youtube_id"], float(row["time_start"]), float(row["time_end"])
        except (KeyError, TypeError, ValueError) as exc:
            raise UserError(f"{where}: expected youtube_id, time_start and time_end ({exc})") from exc
        if not row.get("label"):
            raise UserError(f"{where}: no label (test annotations without labels cannot make a dataset)")
        split = _split_name(row.get("split") or "train", where)
        cut = files.get(f"{youtube_id}_{int(start):06d}_{int(end):06d}")
        whole = files.get(youtube_id)
        source, window = (cut, None) if cut is not None else (whole, (start, end) if whole else None)
        yield Entry(youtube_id, row["label"], split, source, window)


def _list_entries(path: Path, videos: Path, split: str) -> Iterator[Entry]:
    for line, text in enumerate(path.read_text().splitlines(), start=1):
        if not text.strip():
            continue
        parts = text.rsplit(maxsplit=1)
        if len(parts) != 2:
            raise UserError(f"{path}:{line}: expected 'path label', got '{text}'")
        source = videos / parts[0]
        present = source.exists() or source.is_symlink()
        yield Entry(parts[0], parts[1], split, source if present else None, None)


def read_annotations(path: Path, videos: Path, list_split: str = "train") -> List[Entry]:
    """Entries of a Kinetics CSV (detected by its header) or of an mmaction `path label` list."""
    if not path.is_file():
        raise UserError(f"annotations file {path} does not exist (--annotations)")
    if not videos.is_dir():
        raise UserError(f"videos folder {videos} does not exist (--videos)")
    with open(path, newline="") as file:
        header = file.readline()
    if "youtube_id" in header:
        with open(path, newline="") as file:
            return list(_kinetics_entries(path, videos, list(csv.DictReader(file))))
    return list(_list_entries(path, videos, _split_name(list_split, "--split")))


def choose(entries: List[Entry], classes: int, class_list: Optional[Path], per_class: int) -> Tuple[List[str], List[Entry]]:
    """The chosen class names, and the entries kept: at most `per_class` found videos per class and split."""
    present = sorted({entry.label for entry in entries})
    if class_list is not None and classes:
        raise UserError("choose classes with either --classes or --class-list, not both")
    if class_list is not None:
        if not class_list.is_file():
            raise UserError(f"class list {class_list} does not exist (--class-list)")
        names = [line.strip() for line in class_list.read_text().splitlines() if line.strip()]
        unknown = [name for name in names if name not in present]
        if unknown:
            raise UserError(f"{class_list}: classes not in the annotations: {unknown[:5]}")
    else:
        names = present[:classes] if classes > 0 else present
    chosen = set(names)
    kept, counts = [], defaultdict(int)
    for entry in entries:
        if entry.label in chosen and (entry.source is None or not per_class or counts[entry.label, entry.split] < per_class):
            kept.append(entry)
            counts[entry.label, entry.split] += entry.source is not None
    return names, kept


def parse_shard(text: str) -> Tuple[int, int]:
    """`i/N` -> (i, N) with 0 <= i < N; `UserError` naming --shard otherwise."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match or not int(match[1]) < int(match[2]):
        raise UserError(f"--shard={text}: expected i/N with 0 <= i < N, e.g. 0/8")
    return int(match[1]), int(match[2])


def shard_of(entry: Entry, count: int) -> int:
    """The shard an entry belongs to: a hash of its key, so every machine splits alike in any order."""
    return zlib.crc32(f"{entry.split}/{entry.key}".encode()) % count


def take_shard(entries: List[Entry], index: int, count: int) -> List[Entry]:
    """The entries of shard `index` of `count` (disjoint shards that together hold every entry)."""
    return [entry for entry in entries if shard_of(entry, count) == index]


# ---- converting one video (runs in worker processes) ----

def output_path(entry: Entry) -> Path:
    """Where an entry's re-encoded clip goes, relative to the output folder."""
    label = re.sub(r"[^\w.-]+", "_", entry.label).strip("_") or "label"
    return Path("videos") / entry.split / label / f"{Path(entry.key).stem}.mp4"


def _scaled(width: int, height: int, short_side: int) -> Tuple[int, int]:
    """Even width and height with the short side at most `short_side`, the aspect ratio kept."""
    factor = min(1.0, short_side / min(width, height))
    return max(2, round(width * factor / 2) * 2), max(2, round(height * factor / 2) * 2)


def reencode(entry: Entry, target: Path, options: Options) -> Optional[str]:
    """Verify, resize and re-encode one video to `target`; the reason it was skipped, or None."""
    reason = unreadable_reason(entry.source)
    if reason is not None:
        return reason
    try:
        with open_video(entry.source) as reader:  # verifies the container, stream and frame index
            fps = reader.fps or 30.0
        _reencode(entry, target, fps, options)
    except (VideoDecodeError, av.FFmpegError) as exc:
        return getattr(exc, "reason", None) or f"cannot decode ({exc})"
    except _EmptyWindow as exc:
        return str(exc)
    return None


class _EmptyWindow(Exception):
    """The annotated time window holds no frame of the video."""


def _reencode(entry: Entry, target: Path, fps: float, options: Options) -> None:
    partial = target.with_name(f"{target.stem}.part{target.suffix}")  # renamed when complete
    target.parent.mkdir(parents=True, exist_ok=True)
    writer = None
    try:
        with av.open(str(entry.source)) as container:
            stream = container.streams.video[0]
            stream.codec_context.thread_count = 1
            for frame in container.decode(stream):
                if entry.window is not None and frame.time is not None:
                    if frame.time < entry.window[0]:
                        continue
                    if frame.time >= entry.window[1]:
                        break
                if writer is None:
                    width, height = _scaled(frame.width, frame.height, options.short_side)
                    writer = VideoWriter(partial, fps, width, height, keyframe_interval=options.keyframe_interval,
                                         crf=options.crf)
                writer.write(frame.reformat(width=width, height=height, format="yuv420p", interpolation="AREA"))
        if writer is None:
            raise _EmptyWindow(f"no frames between {entry.window[0]} s and {entry.window[1]} s")
        writer.close()
        os.replace(partial, target)
    finally:
        if partial.exists():
            partial.unlink()


def _convert_job(job: Tuple[Entry, str, Options]) -> Tuple[Entry, Optional[str]]:
    entry, target, options = job
    return entry, reencode(entry, Path(target), options)


# ---- the whole run ----

def prepare(entries: List[Entry], labels: List[str], out: Path, options: Options, workers: int,
            progress: bool = True, shard: Optional[Tuple[int, int]] = None) -> Dict:
    """Convert every found entry (skipping finished outputs) and write lists, labels and the report;
    `shard` (i, N) is recorded in the report for `prep merge`."""
    out.mkdir(parents=True, exist_ok=True)
    labels_file = out / "labels.txt"
    if labels_file.is_file() and read_labels(out) != labels:
        raise UserError(f"{labels_file} lists other classes than this run chooses; use a new --out")
    labels_file.write_text("".join(f"{label}\n" for label in labels))
    found = [entry for entry in entries if entry.source is not None]
    todo = [(entry, str(out / output_path(entry)), options) for entry in found
            if not (out / output_path(entry)).is_file()]
    reasons: Dict[Entry, Optional[str]] = {}
    bar = tqdm(total=len(todo), desc="re-encoding", unit="video", disable=not progress or not todo)
    if workers > 1 and len(todo) > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for entry, reason in pool.map(_convert_job, todo):
                reasons[entry] = reason
                bar.update(1)
    else:
        for job in todo:
            entry, reason = _convert_job(job)
            reasons[entry] = reason
            bar.update(1)
    bar.close()
    written = [entry for entry in found if reasons.get(entry) is None]
    for split in sorted({entry.split for entry in written}):
        with open(out / f"{split}.csv", "w", newline="") as file:
            writer = csv.writer(file)
            writer.writerow(["path", "label"])
            writer.writerows((output_path(entry).as_posix(), entry.label) for entry in written if entry.split == split)
    report = {
        "written": [output_path(entry).as_posix() for entry in written],
        "skipped": [{"source": str(entry.source), "reason": reason} for entry, reason in reasons.items() if reason],
        "missing": [entry.key for entry in entries if entry.source is None],
    }
    if shard is not None:
        report["shard"] = {"index": shard[0], "count": shard[1]}
    (out / "prep_report.json").write_text(json.dumps(report, indent=2))
    return report
