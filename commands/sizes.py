"""`run.py sizes [--classes 400] [--frames 32] [--size 224] [--published-size 256] [--segments 8]`:
params and GMACs of the shipped R50 model configs beside mmaction2's published sizes, as Markdown."""
from __future__ import annotations

import argparse

from analysis.profiling.sizes import markdown, size_rows
from configs.compose import Config, load_config, model_config_file

CONFIGS = ("tsn_r50", "tsn_r50_iaa", "c2d_r50", "c2d_r50_nl5", "i3d_r50", "i3d_r50_nl5", "i3d_r50_nl5_iaa",
           "i3d_r50_cbam")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--classes", type=int, default=400)
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--published-size", type=int, default=256)
    parser.add_argument("--segments", type=int, default=8)
    parser.add_argument("--models", nargs="+", default=list(CONFIGS), help="configs/model names")


def run_command(args: argparse.Namespace, cfg: Config) -> int:
    model_cfgs = {name: load_config(str(model_config_file(name))).model for name in args.models}
    rows = size_rows(model_cfgs, args.classes, args.frames, args.size, args.published_size, args.segments)
    print(markdown(rows, args.published_size))
    return 0
