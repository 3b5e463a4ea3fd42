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
    print(f"{len(videos)} videos, short side 256, random 224 crop, flip, uint8; {args.rounds} interleaved rounds, "
          f"data.decode_threads={cfg.data.decode_threads}; clips per wall second and per CPU second (all threads)")
    print(f"{'backend':8} {'sampling':10} {'mmaction2':9} {'ours/s':>7} {'theirs/s':>8} {'ratio':>6} "
          f"{'ours/CPU s':>10} {'theirs/CPU s':>12} {'CPU ratio':>9}")
    for row in rows:
        print(f"{row['backend']:8} {row['sampling']:10} {row['mmaction2_backend']:9} {row['ours_clips_per_s']:7.2f} "
              f"{row['mmaction2_clips_per_s']:8.2f} {row['ratio']:5.2f}x {row['ours_cpu_clips_per_s']:10.2f} "
              f"{row['mmaction2_cpu_clips_per_s']:12.2f} {row['cpu_ratio']:8.2f}x")
        for name, reason in row["left_out"].items():
            print(f"  left out of {row['backend']} {row['sampling']} (mmaction2 fails on it): {name}: {reason[:120]}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"results": rows}, indent=2))
    return 0
