"""`run.py bench train --config FILE [--frames T --size S --batch B --steps N] [--data synthetic|DIR] --json FILE`."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from bench.train import BenchTrainSettings, bench_train, format_report
from configs.compose import Config
from errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--frames", type=int, help="clip frames (TSN: segments); default: data.sampling")
    parser.add_argument("--size", type=int, help="crop size; default: data.transforms.crop_size")
    parser.add_argument("--batch", type=int, help="clips per step; default: data.batch_size")
    parser.add_argument("--steps", type=int, default=10, help="timed training steps")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (compile, allocator, cuDNN)")
    parser.add_argument("--data", default="synthetic",
                        help="synthetic (random clips made on the device), a dataset folder, or a folder of videos")
    parser.add_argument("--json", help="write the report here")


def run_command(args: argparse.Namespace, cfg: Config) -> int:
    if not args.config:
        raise UserError("bench train needs --config MODEL_OR_EXPERIMENT_YAML")
    settings = BenchTrainSettings(frames=args.frames, size=args.size, batch=args.batch, steps=args.steps,
                                  warmup=args.warmup, data=args.data)
    report = bench_train(cfg, settings, config_name=args.config)
    print(format_report(report))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0
