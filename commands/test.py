"""`run.py test checkpoint=PATH [test.clips=10 test.crops=3 ...]`: multi-view test, writes test_results.json."""
from __future__ import annotations

import argparse
from pathlib import Path

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from commands.checkpoints import checkpoint_argument, load_trained
from commands.config import Config
from engine.distributed import init_distributed, shutdown
from engine.evaluate import run_test
from errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", help="folder for test_results.json (default: the checkpoint's run folder)")


def test_config(args: argparse.Namespace, cfg: Config, trained: Config) -> Config:
    """The checkpoint's config with the command line's overrides on top; with --config, that file's
    settings instead, keeping the checkpoint's model (the weights fix the architecture)."""
    try:
        if args.config:
            return OmegaConf.merge(cfg, {"model": trained.model})
        return OmegaConf.merge(trained, OmegaConf.from_dotlist(args.overrides))
    except OmegaConfBaseException as exc:
        raise UserError(f"config override: {str(exc).splitlines()[0]}") from exc


def default_output_dir(checkpoint: Path) -> Path:
    """`runs/<name>` for `runs/<name>/checkpoints/x.pt`, else the checkpoint's folder."""
    return checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint.parent


def run_command(args: argparse.Namespace, cfg: Config) -> int:
    path = checkpoint_argument(cfg, "test")
    model, trained, labels = load_trained(path)
    cfg = test_config(args, cfg, trained)
    ctx = init_distributed(cfg.trainer.device)
    try:
        run_test(model, labels, cfg, Path(args.out) if args.out else default_output_dir(Path(path)), ctx)
    finally:
        shutdown(ctx)
    return 0
