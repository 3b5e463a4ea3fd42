"""Our training pipeline's clips/s and the bytes on disk for the same videos encoded several ways.

Each folder holds the same videos (matched by file name without extension), e.g. the outputs of
`prep kinetics` with different keyframe intervals, CRFs or short sides. The recipe is the one of
`bench mmaction2` (short side 256, random 224 crop, flip, uint8). Rounds are interleaved: each video
is read from every folder in turn (the order rotating), so load on the machine touches all alike.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Sequence

import torch

from bench.decode import write_listing
from video.files import list_videos
from bench.mmaction2 import CELLS, our_pipeline
from errors import UserError
from video.config import DataConfig


def matched_videos(folders: Sequence[Path]) -> List[List[Path]]:
    """For each folder, its videos in one order: the names (without extension) all folders hold."""
    found = [{path.stem: path for path in list_videos(folder)} for folder in folders]
    names = sorted(set.intersection(*(set(videos) for videos in found)))
    if not names:
        raise UserError(f"the folders {[str(f) for f in folders]} hold no video of the same name")
    return [[videos[name] for name in names] for videos in found]


def compare_encodings(folders: Sequence[Path], data: DataConfig, rounds: int,
                      progress: Callable[[], None] = lambda: None) -> List[Dict]:
    """Rows `{"folder", "videos", "bytes", "<backend>/<sampling>": clips/s}`, one per folder."""
    torch.set_num_threads(1)
    videos = matched_videos(folders)
    seconds = [{f"{backend}/{sampling}": 0.0 for backend, sampling in CELLS} for _ in folders]
    with tempfile.TemporaryDirectory() as scratch:
        datasets = []
        for number, listed in enumerate(videos):
            root = Path(scratch) / str(number)
            root.mkdir()
            write_listing(listed, root)
            datasets.append({f"{b}/{s}": our_pipeline(root, data, b, s) for b, s in CELLS})
        for index in range(len(videos[0])):  # untimed pass: file cache and decoder set-up
            for cells in datasets:
                for dataset in cells.values():
                    dataset[(index, 0, rounds)]
        for round_ in range(rounds):
            for index in range(len(videos[0])):
                shift = (round_ + index) % len(folders)
                for number in list(range(len(folders)))[shift:] + list(range(shift)):
                    for cell, dataset in datasets[number].items():
                        started = time.perf_counter()
                        dataset[(index, round_, 0)]
                        seconds[number][cell] += time.perf_counter() - started
                progress()
    clips = rounds * len(videos[0])
    return [{"folder": str(folder), "videos": len(listed), "bytes": sum(p.stat().st_size for p in listed),
             **{cell: round(clips / spent, 2) for cell, spent in cell_seconds.items()}}
            for folder, listed, cell_seconds in zip(folders, videos, seconds)]
