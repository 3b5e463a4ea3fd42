"""`run.py check --root DIR [--split S] [--workers K] --out FILE [--write-clean]`: decode every listed
video of a dataset folder as training would and report what is unreadable, truncated or too short."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from configs.compose import Config
from errors import UserError
from video.check import CATEGORIES, check_dataset, write_clean_split

DEFAULT_TIMEOUT = 60.0  # seconds per video when data.decode_timeout leaves it unlimited


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", type=Path, required=True, help="dataset folder (labels.txt, <split>.csv)")
    parser.add_argument("--split", default="train", help="which <split>.csv to check")
    parser.add_argument("--workers", type=int, default=2, help="videos decoded in parallel")
    parser.add_argument("--out", type=Path, required=True, help="the JSON report to write")
    parser.add_argument("--write-clean", action="store_true",
                        help="also write <split>_clean.csv without the videos training would skip")


def run_command(args: argparse.Namespace, cfg: Config) -> int:
    if args.workers < 1:
        raise UserError(f"--workers={args.workers}: must be at least 1")
    data = cfg.data
    if data.decode_timeout <= 0:
        data.decode_timeout = DEFAULT_TIMEOUT

    def show(row):
        if row["status"] != "ok":
            print(f"{row['status']}: {row['path']}: {row['reason']}", flush=True)

    report = check_dataset(args.root, args.split, data, args.workers, progress=show)
    if args.write_clean:
        report["clean_split"] = str(write_clean_split(args.root, args.split, report))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    counts = ", ".join(f"{len(report[name])} {name.replace('_', ' ')}" for name in CATEGORIES)
    print(f"checked {report['videos']} videos of {args.root}/{args.split}.csv: {report['ok']} ok, {counts}; "
          f"report: {args.out}" + (f"; clean split: {report['clean_split']}" if args.write_clean else ""))
    return 0
