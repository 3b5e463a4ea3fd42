"""Which files are videos: the one suffix list and the one way to list a folder's videos."""
from __future__ import annotations

from pathlib import Path
from typing import List

from errors import UserError

VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v", ".flv")  # what folder scans pick up


def list_videos(path: str | Path, what: str = "--videos") -> List[Path]:
    """The file itself, or every video file below the folder (recursively, sorted); a path that does not
    exist, or a folder with no videos, is a UserError starting with `what` (the option that named it)."""
    path = Path(path)
    if path.is_dir():
        videos = sorted(p for p in path.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file())
        if not videos:
            raise UserError(f"{what} {path}: no video files ({', '.join(VIDEO_SUFFIXES)}) below this folder")
        return videos
    if not path.exists():
        raise UserError(f"{what} {path}: no such file or folder")
    return [path]
