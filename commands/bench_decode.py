"""`run.py bench decode --videos DIR [--json FILE]`: decode throughput of each backend against a bare decoder."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from tqdm import tqdm

from bench.decode import (REFERENCES, SAMPLINGS, bench_case, bench_loader_on, decodable_videos, open_milliseconds,
                          via_pyav_files)
from configs.compose import Config
from errors import UserError
from video.files import list_videos
from video.transforms import build_train_transform


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--videos", required=True, type=Path, help="folder of videos to read")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--repeats", type=int, default=2, help="timed passes over the videos per case")


def run_command(args: argparse.Namespace, cfg: Config) -> int:
    if args.repeats < 1:
        raise UserError(f"--repeats={args.repeats} must be at least 1")
    videos = decodable_videos(list_videos(args.videos))  # also the untimed pass that warms the file cache
    short_side = build_train_transform(cfg.data.transforms, num_classes=1).source_short_side
    forward = via_pyav_files(videos, short_side)
    cases = [(backend, sampling) for backend in REFERENCES for sampling in SAMPLINGS]
    with tqdm(total=len(cases) * len(videos) * args.repeats, desc="decode bench", unit="clip") as bar:
        cased = {case: bench_case(videos, cfg.data, *case, args.repeats, bar,
                                  apart=forward if case[0] == "decord" else ()) for case in cases}
    results = [row for row, _ in cased.values()]
    opens = {backend: open_milliseconds(videos, backend, short_side, args.repeats) for backend in REFERENCES}
    loader = bench_loader_on(videos, cfg.data)
    print(f"{len(videos)} videos, crop {cfg.data.transforms.crop_size} from short side "
          f"{list(cfg.data.transforms.train_scale)}, {args.repeats} passes")
    print(f"{'backend':8} {'sampling':10} {'clips/s':>8} {'frames/s':>9} {'bare frames/s':>14} {'ratio':>6}")
    for row in results:
        print(f"{row['backend']:8} {row['sampling']:10} {row['clips_per_s']:8.1f} {row['frames_per_s']:9.0f} "
              f"{row['reference_frames_per_s']:14.0f} {row['ratio']:6.3f}")
    if forward:
        ratios = ", ".join(f"{s} {cased['decord', s][1]}" for s in SAMPLINGS)
        print(f"the decord backend hands {len(forward)} of {len(videos)} files to PyAV (AVI with B-frames, where "
              f"decord's seeking returns wrong frames, and unscaled files it reads for less); the bare call is not "
              f"a like-for-like baseline there; "
              f"decord ratio on the other {len(videos) - len(forward)}: {ratios}")
    print("open (container and index or probe, no frame decoded), ms per video: "
          + ", ".join(f"{backend} {ms}" for backend, ms in opens.items()))
    for row in loader:
        print(f"loader ({cfg.data.backend}, dense32x2), {row['workers']} workers: {row['clips_per_s']:.1f} clips/s")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"results": results, "loader": loader, "open_ms": opens}, indent=2))
    return 0
