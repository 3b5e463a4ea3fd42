"""`run.py bench loader`: loader clips/s against workers and decoder threads, on `data.root`'s training split."""
from __future__ import annotations

import argparse
import os

from bench.loader import bench_loader
from configs.compose import Config
from errors import UserError
from video.dataset import VideoDataset


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2], help="worker counts to time")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="decoder threads per worker to time")
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs per worker count")


def run_command(args: argparse.Namespace, cfg: Config) -> int:
    if args.epochs < 1 or min(args.workers) < 0 or min(args.threads) < 1:
        raise UserError("--epochs must be >= 1, --workers >= 0 and --threads >= 1")
    dataset = VideoDataset(cfg.data.root, "train", cfg.data, train=True)
    print(f"{cfg.data.root}: {len(dataset)} training videos, backend {cfg.data.backend}, "
          f"batch {cfg.data.batch_size}, {args.epochs} timed epochs, {os.cpu_count()} cores")
    for row in bench_loader(dataset, cfg.data, args.workers, args.epochs, args.threads):
        print(f"  workers {row['workers']}, decoder threads {row['decode_threads']}: {row['clips_per_s']:8.1f} clips/s")
    return 0
