"""`run.py visualize checkpoint=PATH --video FILE --out DIR [--block NAME] [--query t,y,x|auto]`.

Writes DIR/relations.png, .mp4, .json (and pyramid_maps.png for IAA models) from analysis/visualize.py;
wandb (logger.wandb.mode other than disabled) gets the images.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Dict

from analysis.visualize import visualize
from commands.checkpoints import checkpoint_argument, load_trained
from commands.config import Config
from commands.test import test_config
from engine.logging import WandbSink


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--video", required=True, help="video file to look at")
    parser.add_argument("--out", required=True, help="folder for relations.png/.mp4/.json")
    parser.add_argument("--block", help="attention block name, e.g. res4.1.nonlocal (default: the last non-local block)")
    parser.add_argument("--query", default="auto", help="t,y,x in sampled-frame pixels, or auto (default)")


def log_to_wandb(cfg: Config, out_dir: Path, files: Dict[str, str]) -> None:
    """Images to wandb when enabled (offline by default), next to the files."""
    if cfg.logger.wandb.mode == "disabled":
        return
    sink = WandbSink(cfg, {"visualize": {"files": files}}, out_dir)
    for key, name in (("png", "relations"), ("pyramid_maps", "pyramid_maps")):
        if key in files:
            sink.log_image(f"visualize/{name}", Path(files[key]), 0)
    sink.close()


def visualize_checkpoint(checkpoint: str, video: str, out_dir: str | Path, block: str | None = None,
                         query: str = "auto", args: argparse.Namespace | None = None,
                         cfg: Config | None = None) -> Dict[str, str]:
    """`visualize` on a checkpoint's model with its config, or with the command line's `args` and `cfg`
    on top of it as `test` composes them (data, `visualize.*` and `logger.*` options)."""
    model, trained, labels = load_trained(checkpoint)
    cfg = trained if cfg is None else test_config(args, cfg, trained)
    files = visualize(model, cfg.data, labels, video, out_dir, cfg.visualize, block, query, str(checkpoint))
    log_to_wandb(cfg, Path(out_dir), files)
    return files


def run_command(args: argparse.Namespace, cfg: Config) -> int:
    files = visualize_checkpoint(checkpoint_argument(cfg, "visualize"), args.video, args.out, args.block, args.query,
                                 args, cfg)
    print("visualize: wrote " + ", ".join(files.values()))
    return 0
