"""`run.py bench decode --videos DIR --json FILE`: decode throughput of the pipeline against bare decoders.

For each backend and sampling (TSN 8 segments; dense 32 frames at stride 2), every video in DIR is read
as a training clip by the pipeline (open, sample, decode, `data.transforms` crop and flip to a uint8
clip), and the same frame indices are read by the bare decoder right after:
- decord: `decord.VideoReader(path, num_threads=1).get_batch(indices)`;
- PyAV: seek to the keyframe before the first index by time, decode forward, convert the wanted frames
  to RGB with one reused converter (frames are placed by timestamp, as a plain PyAV loop does).
The pipeline asks the decoder for frames no larger than the transform needs (the colour conversion
scales them), which is where it can beat the bare call; the bare call converts at full resolution.
`ratio` is the pipeline's frames/s over the bare decoder's. The untimed pass that checks every file
also warms the file cache. `open_ms` is the mean cost of opening a video (what a cached packet index
could save at most). A loader run (dense 32x2, `data.backend`, batches of up to 4) adds clips/s for
0, 1 and 2 workers.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import av
import numpy as np
from av.video.reformatter import VideoReformatter
from omegaconf import OmegaConf
from tqdm import tqdm

from bench.loader import bench_loader
from errors import UserError
from video.config import DataConfig
from video.dataset import VideoDataset
from video.decode import BACKENDS, VideoDecodeError, open_video
from video.files import list_videos
from video.safe_read import read_clips
from video.sampling import clip_length
from video.transforms import build_train_transform

SAMPLINGS = {
    "tsn8": {"mode": "segments", "num_segments": 8},
    "dense32x2": {"mode": "dense", "num_frames": 32, "stride": 2},
}
LOADER_WORKERS = (0, 1, 2)


def bare_decord(path: str, indices: Sequence[int]) -> np.ndarray:
    import decord

    return decord.VideoReader(path, ctx=decord.cpu(0), num_threads=1).get_batch(list(indices)).asnumpy()


def bare_pyav(path: str, indices: Sequence[int]) -> np.ndarray:
    wanted = sorted(set(int(i) for i in indices))
    frames: Dict[int, np.ndarray] = {}
    to_rgb = VideoReformatter()
    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1
        fps, time_base, start = float(stream.average_rate), stream.time_base, stream.start_time or 0
        container.seek(start + int(wanted[0] / fps / time_base), stream=stream, backward=True)
        for frame in container.decode(stream):
            position = round(float((frame.pts - start) * time_base) * fps)
            while wanted and wanted[0] <= position:
                frames[wanted.pop(0)] = to_rgb.reformat(frame, format="rgb24").to_ndarray()
            if not wanted:
                break
    return np.stack([frames[i] for i in indices if i in frames])


REFERENCES: Dict[str, Callable[[str, Sequence[int]], np.ndarray]] = {"pyav": bare_pyav, "decord": bare_decord}


def write_listing(videos: Sequence[Path], root: Path) -> None:
    """A one-class dataset folder at `root` whose train split lists `videos` in place."""
    (root / "labels.txt").write_text("video\n")
    (root / "train.csv").write_text("path,label\n" + "".join(f"{p.resolve()},video\n" for p in videos))


def decodable_videos(videos: List[Path]) -> List[Path]:
    """The videos both backends open; reports the others."""
    good = []
    for path in videos:
        try:
            for backend in BACKENDS:
                with open_video(path, backend) as reader:
                    reader.get_frames([0, reader.num_frames - 1])
            good.append(path)
        except VideoDecodeError as exc:
            print(f"left out: {exc}")
    return good


def via_pyav_files(videos: List[Path], short_side: Optional[int]) -> List[Path]:
    """Files the decord backend hands to the PyAV reader at this short side (see DecordReader)."""
    forward = []
    for path in videos:
        with open_video(path, "decord", short_side=short_side) as reader:
            if reader.via_pyav:
                forward.append(path)
    return forward


def open_milliseconds(videos: List[Path], backend: str, short_side: Optional[int], repeats: int) -> float:
    """Mean time to open and close a video (container, index or probe: no frame decoded), in ms."""
    started = time.perf_counter()
    for _ in range(repeats):
        for path in videos:
            open_video(path, backend, short_side=short_side).close()
    return round(1000 * (time.perf_counter() - started) / (repeats * len(videos)), 2)


def bench_case(videos: List[Path], data: DataConfig, backend: str, sampling: str, repeats: int,
               bar: tqdm, apart: Sequence[Path] = ()) -> Tuple[Dict, Optional[float]]:
    """One results row (pipeline and bare-decoder throughput on the same indices), and the ratio
    over the videos not in `apart`."""
    cfg = OmegaConf.merge(OmegaConf.structured(DataConfig), data,
                          {"backend": backend, "decode_threads": 1, "sampling": SAMPLINGS[sampling]})
    transform = build_train_transform(cfg.transforms, num_classes=1)
    seconds = {"pipeline": 0.0, "reference": 0.0}
    kept = {"pipeline": 0.0, "reference": 0.0}
    clips = 0
    for repeat in range(repeats):
        for number, path in enumerate(videos):
            rng = np.random.default_rng([repeat, number])
            started = time.perf_counter()
            read = read_clips(str(path), cfg, rng, short_side=transform.source_short_side)
            transform(read.frames[0], 0, rng)
            indices = read.indices
            pipeline = time.perf_counter() - started
            started = time.perf_counter()
            REFERENCES[backend](str(path), indices[0].tolist())
            reference = time.perf_counter() - started
            for totals in (seconds,) if path in apart else (seconds, kept):
                totals["pipeline"] += pipeline
                totals["reference"] += reference
            clips += 1
            bar.update(1)
    frames_total = clips * clip_length(cfg.sampling)
    row = {"backend": backend, "sampling": sampling,
           "clips_per_s": round(clips / seconds["pipeline"], 2),
           "frames_per_s": round(frames_total / seconds["pipeline"], 1),
           "reference_frames_per_s": round(frames_total / seconds["reference"], 1),
           "ratio": round(seconds["reference"] / seconds["pipeline"], 3)}
    return row, round(kept["reference"] / kept["pipeline"], 3) if kept["pipeline"] else None


def bench_loader_on(videos: List[Path], data: DataConfig) -> List[Dict]:
    """Loader rows on a temporary one-class dataset folder listing the videos in place."""
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        write_listing(videos, root)
        cfg = OmegaConf.merge(OmegaConf.structured(DataConfig), data,
                              {"batch_size": min(4, len(videos)), "sampling": SAMPLINGS["dense32x2"]})
        dataset = VideoDataset(root, "train", cfg, train=True)
        rows = bench_loader(dataset, cfg, LOADER_WORKERS, epochs=2)
    return [{"workers": row["workers"], "clips_per_s": row["clips_per_s"]} for row in rows]
