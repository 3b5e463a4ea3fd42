"""`run.py train [--budget 16GiB]`: train alone or under `torchrun --nproc_per_node N run.py train ...`.

With `prep.synthetic_if_missing`, rank 0 first writes the built-in synthetic dataset to `data.root`
when that folder has no labels.txt (the other ranks wait for it). With `data.batch_size=auto` the
batch is the largest whose predicted memory fits `trainer.memory_budget` (`--budget` overrides it):
analysis/profiling/auto_batch.py predicts, the engine asks it through a callable (it imports no analysis).
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple

import torch

from analysis.profiling.auto_batch import choose_batch
from commands.config import Config
from data_prep.synthetic import write_dataset
from engine.train import train


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--budget", help="memory budget for data.batch_size=auto, e.g. 16GiB "
                                         "(overrides trainer.memory_budget)")


def synthetic_dataset_writer(cfg: Config) -> Optional[Callable[[], None]]:
    """The action that writes the synthetic dataset if `data.root` lacks one; None when not asked for.

    Every rank gets the same answer (it depends on the config only), so all of them wait for rank 0."""
    if not cfg.prep.synthetic_if_missing:
        return None
    root = Path(cfg.data.root)

    def write_if_missing() -> None:
        if not (root / "labels.txt").is_file():
            print(f"writing the built-in synthetic dataset to {root}", flush=True)
            write_dataset(root, cfg.prep.synthetic, progress=False)

    return write_if_missing


def batch_chooser(cfg: Config) -> Callable[[torch.device, int], Tuple[int, str]]:
    """What the engine calls to resolve `data.batch_size=auto`: the memory model's batch and its line."""
    def choose(device: torch.device, num_classes: int) -> Tuple[int, str]:
        choice = choose_batch(cfg, device, num_classes)
        return choice.batch, choice.line

    return choose


def train_experiment(cfg: Config) -> Dict[str, Any]:
    """Train `cfg` (writing its synthetic dataset first where asked); returns the trainer's summary."""
    return train(cfg, synthetic_dataset_writer(cfg), batch_chooser(cfg))


def run_command(args: argparse.Namespace, cfg: Config) -> int:
    if args.budget:
        cfg.trainer.memory_budget = args.budget
    train_experiment(cfg)
    return 0
