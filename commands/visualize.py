"""`run.py visualize checkpoint=PATH --video FILE --out DIR [--block NAME] [--query t,y,x|auto]`.

Writes DIR/relations.png, .mp4, .json (and pyramid_maps.png for IAA models) from analysis/relations/visualize.py;
wandb (logger.wandb.mode other than disabled) gets the images.
"""
from __future__ import annotations

import argparse

from analysis.relations.visualize import visualize
from configs.compose import Config, checkpoint_path, config_for_checkpoint
from engine.checkpoint import load_trained
from engine.run_log import log_images


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--video", required=True, help="video file to look at")
    parser.add_argument("--out", required=True, help="folder for relations.png/.mp4/.json")
    parser.add_argument("--block", help="attention block name, e.g. res4.1.nonlocal (default: the last non-local block)")
    parser.add_argument("--query", default="auto", help="t,y,x in sampled-frame pixels, or auto (default)")


def run_command(args: argparse.Namespace, cfg: Config) -> int:
    path = checkpoint_path(cfg, "visualize")
    model, trained, labels = load_trained(path, Config)
    cfg = config_for_checkpoint(trained, cfg, args.config, args.overrides)
    files = visualize(model, cfg.data, labels, args.video, args.out, cfg.visualize, args.block, args.query, path)
    log_images(cfg, args.out, "visualize", files)
    print("visualize: wrote " + ", ".join(files.values()))
    return 0
