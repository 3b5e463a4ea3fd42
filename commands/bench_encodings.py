"""`run.py bench encodings --videos DIR1 DIR2 ... [--json FILE] [--rounds N]`: our pipeline's clips/s and
the bytes on disk for the same videos encoded several ways (see bench/encodings.py)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from tqdm import tqdm

from bench.encodings import compare_encodings
from bench.mmaction2 import CELLS
from errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--videos", required=True, type=Path, nargs="+", help="folders of the same videos")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved timed passes over the videos")


def run_command(args: argparse.Namespace, cfg) -> int:
    if args.rounds < 1:
        raise UserError(f"--rounds={args.rounds} must be at least 1")
    with tqdm(desc="encodings", unit="video", leave=False) as bar:
        rows = compare_encodings(args.videos, cfg.data, args.rounds, progress=lambda: bar.update(1))
    cells = [f"{backend}/{sampling}" for backend, sampling in CELLS]
    print(f"{rows[0]['videos']} videos in each folder; clips/s of the training pipeline (short side 256, "
          f"random 224 crop, flip), {args.rounds} interleaved rounds")
    print(f"{'folder':40} {'MB':>7} " + " ".join(f"{cell:>16}" for cell in cells))
    for row in rows:
        print(f"{row['folder'][-40:]:40} {row['bytes'] / 1e6:7.2f} " + " ".join(f"{row[cell]:16.2f}" for cell in cells))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"results": rows}, indent=2))
    return 0
