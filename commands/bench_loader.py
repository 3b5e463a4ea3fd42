"""`run.py bench loader`: loader clips/s against workers and decoder threads, on `data.root`'s training split;
`--format shards`: the shards of `data.shards` against the folder `data.root`, interleaved."""
from __future__ import annotations

import argparse
import os

from omegaconf import OmegaConf

from bench.loader import bench_loader, shards_against_folders
from configs.compose import Config
from errors import UserError
from video.dataset import VideoDataset
from video.formats import open_split


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2], help="worker counts to time")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="decoder threads per worker to time")
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs per worker count")
    parser.add_argument("--format", choices=["folders", "shards"], default="folders",
                        help="shards: time data.shards against data.root (the same videos), alternating")
    parser.add_argument("--rounds", type=int, default=3, help="--format shards: rounds of folders then shards")


def run_command(args: argparse.Namespace, cfg: Config) -> int:
    if args.epochs < 1 or min(args.workers) < 0 or min(args.threads) < 1 or args.rounds < 1:
        raise UserError("--epochs and --rounds must be >= 1, --workers >= 0 and --threads >= 1")
    if args.format == "shards":
        return _shards(args, cfg)
    dataset = VideoDataset(cfg.data.root, "train", cfg.data, train=True)
    print(f"{cfg.data.root}: {len(dataset)} training videos, backend {cfg.data.backend}, "
          f"batch {cfg.data.batch_size}, {args.epochs} timed epochs, {os.cpu_count()} cores")
    for row in bench_loader(dataset, cfg.data, args.workers, args.epochs, args.threads):
        print(f"  workers {row['workers']}, decoder threads {row['decode_threads']}: {row['clips_per_s']:8.1f} clips/s")
    return 0


def _shards(args: argparse.Namespace, cfg: Config) -> int:
    folders = open_split(OmegaConf.merge(cfg.data, {"format": "folders"}), "train", train=True)
    shards = open_split(OmegaConf.merge(cfg.data, {"format": "shards"}), "train", train=True)
    print(f"{cfg.data.root}: {len(folders)} training videos; {cfg.data.shards}: {len(shards.samples)} in "
          f"{len(shards.counts)} shards; backend {cfg.data.backend}, batch {cfg.data.batch_size}, shuffle buffer "
          f"{cfg.data.shard_buffer}, {args.epochs} epochs per loader, {args.rounds} rounds, {os.cpu_count()} cores")
    for row in shards_against_folders(folders, shards, cfg.data, args.workers, args.epochs, args.rounds):
        ratio = f"  ({row['shards_per_folders']:.3f} x folders)" if "shards_per_folders" in row else ""
        print(f"  {row['format']:<7} workers {row['workers']}: {row['clips_per_s']:8.1f} clips/s, first batch "
              f"{row['first_batch_s']:.3f} s, then {row['wait_ms']:.1f} ms a batch{ratio}")
    return 0
