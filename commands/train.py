"""`run.py train [--budget 16GiB]`: train alone or under `torchrun --nproc_per_node N run.py train ...`.

With `prep.synthetic_if_missing`, rank 0 first writes the built-in synthetic dataset to `data.root`
when that folder has no labels.txt (the other ranks wait for it); never for data.format=shards.
With `data.batch_size=auto` the batch is the largest whose predicted memory fits `trainer.memory_budget`
(`--budget` overrides it): analysis/profiling/auto_batch.py predicts, the engine asks it through a
callable (the engine imports no analysis).
"""
from __future__ import annotations

import argparse
from typing import Callable, Tuple

import torch

from analysis.profiling.auto_batch import choose_batch
from configs.compose import Config
from data_prep.synthetic import writer_if_missing
from engine.train import train


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--budget", help="memory budget for data.batch_size=auto, e.g. 16GiB "
                                         "(overrides trainer.memory_budget)")


def batch_chooser(cfg: Config) -> Callable[[torch.device, int], Tuple[int, str]]:
    """What the engine calls to resolve `data.batch_size=auto`: the memory model's batch and its line."""
    def choose(device: torch.device, num_classes: int) -> Tuple[int, str]:
        choice = choose_batch(cfg, device, num_classes)
        return choice.batch, choice.line

    return choose


def run_command(args: argparse.Namespace, cfg: Config) -> int:
    if args.budget:
        cfg.trainer.memory_budget = args.budget
    train(cfg, writer_if_missing(cfg.data, cfg.prep), batch_chooser(cfg))
    return 0
