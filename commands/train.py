"""`run.py train`: train alone or under `torchrun --nproc_per_node N run.py train ...`.

With `prep.synthetic_if_missing`, rank 0 first writes the built-in synthetic dataset to `data.root`
when that folder has no labels.txt (the other ranks wait for it); never for data.format=shards.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Callable, Dict, Optional

from commands.config import Config
from data_prep.synthetic import write_dataset
from engine.train import train


def synthetic_dataset_writer(cfg: Config) -> Optional[Callable[[], None]]:
    """The action that writes the synthetic dataset if `data.root` lacks one; None when not asked for.

    Every rank gets the same answer (it depends on the config only), so all of them wait for rank 0."""
    if not cfg.prep.synthetic_if_missing or cfg.data.format != "folders":
        return None
    root = Path(cfg.data.root)

    def write_if_missing() -> None:
        if not (root / "labels.txt").is_file():
            print(f"writing the built-in synthetic dataset to {root}", flush=True)
            write_dataset(root, cfg.prep.synthetic, progress=False)

    return write_if_missing


def train_experiment(cfg: Config) -> Dict[str, Any]:
    """Train `cfg` (writing its synthetic dataset first where asked); returns the trainer's summary."""
    return train(cfg, synthetic_dataset_writer(cfg))


def run_command(args: argparse.Namespace, cfg: Config) -> int:
    train_experiment(cfg)
    return 0
