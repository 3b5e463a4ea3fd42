"""Our training pipeline against mmaction2's own on the same videos and recipe, interleaved in one process.

Recipe of both sides: dense 32x2 clips or TSN 8 segments (one frame each), short side 256, a random
224 crop, a random horizontal flip, a contiguous uint8 clip out. Ours is `VideoDataset` (training
items); mmaction2's is its transforms `{Decord,PyAV}Init -> SampleFrames -> {Decord,PyAV}Decode ->
Resize(-1, 256) -> RandomCrop(224) -> Flip(0.5) -> FormatShape(NCTHW)`, made contiguous as its collate
would; our PyAV TSN cell is held to its decord (`THEIR_BACKEND`). Both run on one thread, as in a loader
worker: torch and OpenCV threads set to 1; decoder threads `data.decode_threads` for ours, one for mmaction2
(decord's default; PyAV's stream is opened with FFmpeg's automatic thread count, set to 1 here). Threads
neither side can set (PyAV's `to_rgb()` in mmaction2's PyAV pipeline scales on one thread per core, decord
has its own worker thread) are counted too: besides wall time, each call's CPU time (all threads of the
process) is summed, and clips per CPU second is the figure a busy machine does not skew, where a side
with more threads gets more of the CPUs' time. Each round reads every video once per cell with both,
alternating which goes first; an untimed first pass warms the file cache and finds the videos mmaction2
cannot read (left out of that cell for both sides, and reported). mmaction2 is an optional, test-only
dependency: imported only here.
"""
from __future__ import annotations

import importlib.util
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Sequence

import numpy as np
import torch
from omegaconf import OmegaConf

from bench.decode import write_listing
from errors import UserError
from video.config import DataConfig
from video.dataset import VideoDataset

CELLS = [(backend, sampling) for backend in ("decord", "pyav") for sampling in ("dense32x2", "tsn8")]
# mmaction2's backend a cell is measured against, where not the same as ours: its PyAV TSN pipeline fails on
# files whose container states no frame count (mkv: IndexError in PyAVDecode), so TSN is held to its decord
THEIR_BACKEND = {("pyav", "tsn8"): "decord"}
OUR_SAMPLING = {"dense32x2": {"mode": "dense", "num_frames": 32, "stride": 2},
                "tsn8": {"mode": "segments", "num_segments": 8}}
MM_SAMPLING = {"dense32x2": dict(clip_len=32, frame_interval=2, num_clips=1),
               "tsn8": dict(clip_len=1, frame_interval=1, num_clips=8)}
SHORT_SIDE, CROP = 256, 224


def require_mmaction2() -> None:
    """Raise `UserError` when mmaction2 (an optional, test-only dependency) is not importable."""
    if importlib.util.find_spec("mmaction") is None:
        raise UserError("bench mmaction2 needs mmaction2, which is not installed "
                        "(pip install mmaction2==1.2.0 mmcv-lite==2.1.0 mmengine)")


def their_backend(backend: str, sampling: str) -> str:
    """The backend of mmaction2's pipeline that our `backend` is compared with in this cell."""
    return THEIR_BACKEND.get((backend, sampling), backend)


def mmaction2_pipeline(backend: str, sampling: str) -> Callable[[str], np.ndarray]:
    """mmaction2's training pipeline for one cell: path -> contiguous uint8 (clips, 3, T, 224, 224)."""
    import cv2
    from mmaction.datasets.transforms import (DecordDecode, DecordInit, Flip, FormatShape, PyAVDecode, PyAVInit,
                                              RandomCrop, Resize, SampleFrames)

    cv2.setNumThreads(1)

    init, decode = (DecordInit(), DecordDecode()) if backend == "decord" else (PyAVInit(), PyAVDecode())
    transforms = [init, _one_decoder_thread, SampleFrames(**MM_SAMPLING[sampling]), decode, Resize(scale=(-1, SHORT_SIDE)),
                  RandomCrop(CROP), Flip(flip_ratio=0.5), FormatShape("NCTHW")]

    def read(path: str) -> np.ndarray:
        results = dict(filename=path, start_index=0, modality="RGB")
        for transform in transforms:
            results = transform(results)
        return np.ascontiguousarray(results["imgs"])

    return read


def _one_decoder_thread(results: dict) -> dict:
    """mmaction2's PyAV container decodes on one thread (its decord reader already does)."""
    reader = results["video_reader"]
    if hasattr(reader, "streams"):
        reader.streams.video[0].thread_count = 1
    return results


def our_pipeline(root: Path, data: DataConfig, backend: str, sampling: str) -> VideoDataset:
    """Our training dataset over the listing in `root`, with the recipe's sizes."""
    cfg = OmegaConf.merge(OmegaConf.structured(DataConfig), data, {
        "backend": backend, "sampling": OUR_SAMPLING[sampling],
        "transforms": {"train_scale": [SHORT_SIDE, SHORT_SIDE], "crop_size": CROP, "test_scale": SHORT_SIDE,
                       "random_resized_crop": False, "flip": True}})
    return VideoDataset(root, "train", cfg, train=True)


def _readable_by_mmaction2(read: Callable[[str], np.ndarray], videos: Sequence[Path]) -> Dict[str, str]:
    """The untimed pass: videos mmaction2's pipeline raises on, with the exception."""
    failed = {}
    for path in videos:
        try:
            read(str(path))
        except Exception as exc:  # noqa: BLE001 - any failure of the foreign pipeline leaves the video out
            failed[path.name] = f"{type(exc).__name__}: {exc}"
    return failed


def compare(videos: Sequence[Path], data: DataConfig, rounds: int, cells: Sequence = CELLS,
            progress: Callable[[], None] = lambda: None) -> List[Dict]:
    """One row per cell: clips per wall second and per CPU second of ours and of mmaction2, interleaved
    over `rounds` passes."""
    require_mmaction2()
    torch.set_num_threads(1)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        write_listing(videos, root)
        setups = []
        for backend, sampling in cells:
            theirs = mmaction2_pipeline(their_backend(backend, sampling), sampling)
            ours = our_pipeline(root, data, backend, sampling)
            left_out = _readable_by_mmaction2(theirs, videos)
            kept = [i for i, path in enumerate(videos) if path.name not in left_out]
            if not kept:
                raise UserError(f"mmaction2's {backend} {sampling} pipeline read none of the videos: {left_out}")
            for index in kept:
                ours[(index, 0, rounds)]  # warms our side too (an epoch the timed rounds do not use)
            setups.append((backend, sampling, ours, theirs, kept, left_out,
                           {side: {"wall": 0.0, "cpu": 0.0} for side in ("ours", "mmaction2")}))
        for round_ in range(rounds):
            for backend, sampling, ours, theirs, kept, left_out, seconds in setups:
                np.random.seed(round_)  # mmaction2 draws from the global generator
                for number, index in enumerate(kept):
                    sides = [("ours", lambda: ours[(index, round_, 0)]),
                             ("mmaction2", lambda: theirs(str(videos[index])))]
                    for side, call in sides if (round_ + number) % 2 == 0 else sides[::-1]:
                        started, cpu_started = time.perf_counter(), time.process_time()
                        call()
                        seconds[side]["wall"] += time.perf_counter() - started
                        seconds[side]["cpu"] += time.process_time() - cpu_started
                    progress()
        for backend, sampling, _, _, kept, left_out, seconds in setups:
            clips = rounds * len(kept)
            row = {"backend": backend, "sampling": sampling, "mmaction2_backend": their_backend(backend, sampling),
                   "videos": len(kept)}
            for clock, suffix in (("wall", ""), ("cpu", "cpu_")):
                ours_rate, their_rate = clips / seconds["ours"][clock], clips / seconds["mmaction2"][clock]
                row.update({f"ours_{suffix}clips_per_s": round(ours_rate, 2),
                            f"mmaction2_{suffix}clips_per_s": round(their_rate, 2),
                            f"{suffix}ratio": round(ours_rate / their_rate, 3)})
            rows.append({**row, "left_out": left_out})
    return rows
