"""`run.py prep shards`: one split of a dataset folder as sequential tar shards (WebDataset layout) with
their index, for `data.format=shards`. Not `prep kinetics --shard i/N`, which splits the preparation work."""
from __future__ import annotations

import argparse
from pathlib import Path

from configs.compose import Config
from data_prep.tar_shards import prepare_shards, report_name
from errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", required=True, type=Path, help="dataset folder (as prep kinetics / synthetic write)")
    parser.add_argument("--split", default="train", help="the split to write: <split>.csv of the folder")
    parser.add_argument("--out", required=True, type=Path, help="folder of the shards, e.g. DIR/train-000000.tar")
    parser.add_argument("--shard-size", required=True, type=int, help="videos per tar shard")
    parser.add_argument("--seed", type=int, default=0, help="order of the videos across shards")


def run_command(args: argparse.Namespace, cfg: Config) -> int:
    report = prepare_shards(args.root, args.split, args.out, args.shard_size, args.seed)
    summary = (f"{report['written']} videos in {report['shards']} shards ({len(report['kept_shards'])} kept from "
               f"an earlier run), {len(report['skipped'])} skipped; index {report['index']}, "
               f"report {args.out / report_name(args.split)}")
    if not report["written"]:
        raise UserError(f"no video was written ({summary})")
    print(summary)
    return 0
