"""`run.py bench mmaction2 --videos DIR [--json FILE] [--rounds N]`: clips/s of our training pipeline
against mmaction2's on the same videos and recipe (see analysis/bench_mmaction2.py), per backend and
sampling. Needs the optional mmaction2 (test requirements); without it, one `error:` line."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from tqdm import tqdm

from bench.mmaction2 import CELLS, compare, require_mmaction2
from errors import UserError
from video.files import list_videos


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--videos", required=True, type=Path, help="folder of videos to read")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timed passes over the videos")


def run_command(args: argparse.Namespace, cfg) -> int:
    if args.rounds < 1:
        raise UserError(f"--rounds={args.rounds} must be at least 1")
    require_mmaction2()
    videos = list_videos(args.videos)
    with tqdm(total=args.rounds * len(videos) * len(CELLS), desc="ours vs mmaction2", unit="clip", leave=False) as bar:
        rows = compare(videos, cfg.data, args.rounds, progress=lambda: bar.update(1))
    print(f"{len(videos)} videos, short side 256, random 224 crop, flip, uint8; {args.rounds} interleaved rounds on one CPU, "
          f"data.decode_threads={cfg.data.decode_threads}")
    print(f"{'backend':8} {'sampling':10} {'ours clips/s':>12} {'mmaction2 clips/s (its backend)':>32} "
          f"{'ours/mmaction2':>15}")
    for row in rows:
        theirs = f"{row['mmaction2_clips_per_s']:.2f} ({row['mmaction2_backend']})"
        print(f"{row['backend']:8} {row['sampling']:10} {row['ours_clips_per_s']:12.2f} {theirs:>32} "
              f"{row['ratio']:14.2f}x")
        for name, reason in row["left_out"].items():
            print(f"  left out of {row['backend']} {row['sampling']} (mmaction2 fails on it): {name}: {reason[:120]}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"results": rows}, indent=2))
    return 0
