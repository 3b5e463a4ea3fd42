#!/usr/bin/env python
"""The one entry point: `python run.py <command> [--config FILE] [key=value ...]`, installed as `video-nl`.

Each command lives in its own module, imported only when chosen, which provides
`add_arguments(parser)` (optional) and `run_command(args, cfg) -> int | None`.
Any `UserError` ends the program with exit code 2 and one line `error: ...`.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import List, NoReturn, Sequence

from errors import UserError

# command words -> (module, one-line help)
COMMANDS = {
    ("prep", "synthetic"): ("commands.prep_synthetic", "write the built-in synthetic dataset"),
    ("prep", "kinetics"): ("commands.prep_kinetics", "build a Kinetics subset from a CSV and a video folder"),
    ("prep", "merge"): ("commands.prep_merge", "join the folders of `prep kinetics --shard i/N` runs into one"),
    ("prep", "shards"): ("commands.prep_shards", "a dataset split as tar shards (WebDataset layout) for data.format=shards"),
    ("train",): ("commands.train", "train (alone or under torchrun)"),
    ("test",): ("commands.test", "multi-view test of checkpoint=PATH, writes test_results.json"),
    ("convert",): ("commands.convert", "a published checkpoint (mmaction2, pytorchvideo, torchvision) into ours"),
    ("export",): ("commands.export", "a checkpoint of ours to ONNX, TorchScript or mmaction2 (docs/export.md)"),
    ("predict",): ("commands.predict", "labels of any video, a timeline of sliding clips, Grad-CAM with --explain"),
    ("visualize",): ("commands.visualize", "long-range frame relations of a non-local block"),
    ("profile",): ("commands.profile", "memory and FLOPs of non-local placements"),
    ("sizes",): ("commands.sizes", "params and GMACs of the R50 model configs beside mmaction2's"),
    ("bench", "decode"): ("commands.bench_decode", "decode throughput per backend vs a bare decoder"),
    ("bench", "loader"): ("commands.bench_loader", "loader clips/s against the number of workers"),
    ("bench", "mmaction2"): ("commands.bench_mmaction2", "our training pipeline's clips/s vs mmaction2's (optional)"),
    ("bench", "mmaction2-step"): ("commands.bench_mmaction2_step",
                                  "a training step of mmaction2's NL I3D-R50 vs ours, same weights: clips/s, peak"),
    ("bench", "encodings"): ("commands.bench_encodings", "pipeline clips/s and size of videos encoded several ways"),
    ("bench", "model"): ("commands.bench_model", "model clips/s and memory, fused vs reference non-local"),
    ("bench", "train"): ("commands.bench_train", "training-step clips/s, data wait, peak memory, attention kernels"),
    ("bench", "recovery"): ("commands.bench_recovery", "SIGKILL a torchrun rank N times: recovered/N"),
    ("bench", "memory"): ("commands.bench_memory", "loader worker RSS growth per 1000 decodes per backend"),
    ("bench", "predict"): ("commands.bench_predict", "predict clips/s: a checkpoint under torch vs its ONNX export"),
    ("check",): ("commands.check", "decode every listed video as training would; report the bad ones"),
    ("demo",): ("commands.demo", "the end-to-end run behind `make demo`"),
}


class _OneLineParser(argparse.ArgumentParser):
    """argparse that reports mistakes as the project's single `error:` line."""

    def error(self, message: str) -> NoReturn:
        raise UserError(f"{self.prog}: {message}")


def _usage() -> str:
    width = max(len(" ".join(words)) for words in COMMANDS)
    lines = ["usage: video-nl <command> [--config FILE] [key=value ...]   (or: python run.py <command> ...)", "",
             "commands:"]
    lines += [f"  {' '.join(words):<{width}}  {help_}" for words, (_, help_) in COMMANDS.items()]
    return "\n".join(lines)


def _split_command(argv: Sequence[str]) -> tuple[tuple[str, ...], List[str]]:
    for words in sorted(COMMANDS, key=len, reverse=True):
        if tuple(argv[: len(words)]) == words:
            return words, list(argv[len(words):])
    given = " ".join(argv[:2]) if argv else ""
    raise UserError(f"unknown command '{given}'; run `python run.py --help` for the list")


def main(argv: Sequence[str] | None = None) -> int:
    if hasattr(sys.stdout, "reconfigure"):  # each line reaches a redirected log file (`> train.log`) at once
        sys.stdout.reconfigure(line_buffering=True)
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    words, rest = _split_command(argv)
    module_name, help_ = COMMANDS[words]
    module = importlib.import_module(module_name)
    parser = _OneLineParser(prog=f"run.py {' '.join(words)}", description=help_)
    parser.add_argument("--config", help="YAML experiment config (may list `defaults:`)")
    parser.add_argument("overrides", nargs="*", help="config overrides, key=value")
    if hasattr(module, "add_arguments"):
        module.add_arguments(parser)
    args = parser.parse_intermixed_args(rest)
    from configs.compose import load_config  # after parsing, so --help stays fast

    cfg = load_config(args.config, args.overrides)
    return int(module.run_command(args, cfg) or 0)


def cli() -> NoReturn:
    """`python run.py ...` and the installed `video-nl ...` console command: exit code 2 and one `error:` line
    for any UserError."""
    try:
        sys.exit(main())
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    cli()
