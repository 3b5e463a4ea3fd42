"""`run.py test checkpoint=PATH [test.clips=10 test.crops=3 ...]`: multi-view test, writes test_results.json."""
from __future__ import annotations

import argparse
from pathlib import Path

from configs.compose import Config, checkpoint_path, config_for_checkpoint
from engine.checkpoint import load_trained
from engine.distributed import init_distributed, shutdown
from engine.evaluate import run_test


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", help="folder for test_results.json (default: the checkpoint's run folder)")


def default_output_dir(checkpoint: Path) -> Path:
    """`runs/<name>` for `runs/<name>/checkpoints/x.pt`, else the checkpoint's folder."""
    return checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint.parent


def run_command(args: argparse.Namespace, cfg: Config) -> int:
    path = checkpoint_path(cfg, "test")
    model, trained, labels = load_trained(path, Config)
    cfg = config_for_checkpoint(trained, cfg, args.config, args.overrides)
    ctx = init_distributed(cfg.trainer.device)
    try:
        run_test(model, labels, cfg, Path(args.out) if args.out else default_output_dir(Path(path)), ctx)
    finally:
        shutdown(ctx)
    return 0
