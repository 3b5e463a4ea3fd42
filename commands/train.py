"""`run.py train`: train alone or under `torchrun --nproc_per_node N run.py train ...`.

With `prep.synthetic_if_missing`, rank 0 first writes the built-in synthetic dataset to `data.root`
when that folder has no labels.txt (the other ranks wait for it); never for data.format=shards.
"""
from __future__ import annotations

import argparse
from configs.compose import Config
from data_prep.synthetic import writer_if_missing
from engine.train import train


def run_command(args: argparse.Namespace, cfg: Config) -> int:
    train(cfg, writer_if_missing(cfg.data, cfg.prep))
    return 0
