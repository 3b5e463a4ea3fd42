"""`run.py prep synthetic --out DIR`: write the built-in synthetic dataset (prep.synthetic.*)."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from configs.compose import Config
from data_prep.synthetic import CLASSES, write_dataset


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="dataset folder to write")


def run_command(args: argparse.Namespace, cfg: Config) -> int:
    started = time.perf_counter()
    counts = write_dataset(Path(args.out), cfg.prep.synthetic)
    print(f"wrote {counts['train']} training and {counts['val']} validation clips of {len(CLASSES)} classes "
          f"to {args.out} in {time.perf_counter() - started:.1f} s")
    return 0
