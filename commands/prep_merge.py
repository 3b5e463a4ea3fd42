"""`run.py prep merge --inputs DIR1 DIR2 ... --out DIR`: one dataset folder and one prep_report.json from
the folders of `prep kinetics --shard i/N` runs (see data_prep/merge.py)."""
from __future__ import annotations

import argparse
from pathlib import Path

from data_prep.merge import merge


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--inputs", required=True, type=Path, nargs="+", help="shard output folders")
    parser.add_argument("--out", required=True, type=Path, help="merged dataset folder to write")


def run_command(args: argparse.Namespace, cfg) -> int:
    report = merge(args.inputs, args.out)
    print(f"{len(args.inputs)} folders merged into {args.out}: {len(report['written'])} videos, "
          f"{len(report['skipped'])} skipped, {len(report['missing'])} missing; "
          f"report: {args.out / 'prep_report.json'}")
    return 0
