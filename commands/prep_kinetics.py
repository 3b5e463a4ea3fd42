"""`run.py prep kinetics`: a Kinetics subset from a CSV (or `path label` list) and a video folder;
`--shard i/N` processes one of N parts (join them with `prep merge`)."""
from __future__ import annotations

import argparse
from pathlib import Path

from configs.compose import Config
from data_prep.kinetics import Options, choose, parse_shard, prepare, read_annotations, take_shard
from errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--annotations", required=True, type=Path,
                        help="Kinetics CSV (label,youtube_id,time_start,time_end,split) or a 'path label' list")
    parser.add_argument("--videos", required=True, type=Path, help="folder of downloaded videos")
    parser.add_argument("--out", required=True, type=Path, help="dataset folder to write")
    parser.add_argument("--classes", type=int, default=0, help="keep the first N classes by name (0: all)")
    parser.add_argument("--class-list", type=Path, help="file with the class names to keep, one per line")
    parser.add_argument("--per-class", type=int, help="at most N videos per class and split "
                                                      "(default prep.kinetics.per_class; 0: all)")
    parser.add_argument("--short-side", type=int, help="short side of the re-encoded videos "
                                                       "(default prep.kinetics.short_side)")
    parser.add_argument("--workers", type=int, help="parallel conversions (default prep.kinetics.workers)")
    parser.add_argument("--split", default="train", help="split of the videos of a 'path label' list")
    parser.add_argument("--shard", help="i/N: process only shard i of N of the chosen videos (join with prep merge)")


def _pick(value, default):
    return default if value is None else value


def run_command(args: argparse.Namespace, cfg: Config) -> int:
    settings = cfg.prep.kinetics
    options = Options(_pick(args.short_side, settings.short_side), settings.keyframe_interval, settings.crf)
    if options.short_side < 2 or options.keyframe_interval < 1:
        raise UserError(f"--short-side={options.short_side} must be >= 2 and prep.kinetics.keyframe_interval >= 1")
    entries = read_annotations(args.annotations, args.videos, args.split)
    labels, chosen = choose(entries, args.classes, args.class_list, _pick(args.per_class, settings.per_class))
    shard = parse_shard(args.shard) if args.shard else None
    if shard is not None:
        chosen = take_shard(chosen, *shard)
    report = prepare(chosen, labels, args.out, options, _pick(args.workers, settings.workers), shard=shard)
    summary = (f"{len(report['written'])} videos written, {len(report['skipped'])} skipped, "
               f"{len(report['missing'])} missing; report: {args.out / 'prep_report.json'}")
    if not report["written"]:
        raise UserError(f"no video was written ({summary})")
    print(summary)
    return 0
