"""`run.py bench model [--json FILE] [--device auto|cpu|cuda]`: model clips/s and activation memory,
fused vs reference non-local, with the attention kernel each fused block gets."""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Dict

from bench.model import DEFAULT_MODELS, NUM_CLASSES, bench_models, bench_nonlocal, nonlocal_grids
from analysis.profiling.profile import resolve_device
from configs.compose import Config, load_config, model_config_file
from errors import UserError
from models.attention.non_local import NonLocalBlock
from models.build import build_model
from video.config import fixed_batch_size


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS), help="configs/model names")
    parser.add_argument("--tiny-input", default="8x16x56", help="BATCHxFRAMESxSIZE for tiny configs")
    parser.add_argument("--large-input", default="1x8x112", help="BATCHxFRAMESxSIZE for depth >= 50")
    parser.add_argument("--frames", type=int, default=32, help="clip frames that set the non-local grids")
    parser.add_argument("--size", type=int, default=224, help="clip size that sets the non-local grids")
    parser.add_argument("--stages", nargs="+", default=["res2", "res3"], help="non-local grids to measure")
    parser.add_argument("--mode", default="embedded_gaussian", help="non-local mode of the measured block")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per case (fastest reported)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="where to run")


def _parse_input(text: str, option: str) -> tuple:
    try:
        batch, frames, size = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UserError(f"{option}={text!r} must look like BATCHxFRAMESxSIZE, e.g. 8x16x56") from None
    return batch, 3, frames, size, size


def _model_cases(args: argparse.Namespace, cfg: Config) -> Dict[str, tuple]:
    if args.config:  # the given experiment, on its own data settings
        data = cfg.data
        frames = data.sampling.num_segments if cfg.model.arch == "tsn" else data.sampling.num_frames
        size = data.transforms.crop_size
        return {args.config: (cfg.model, (fixed_batch_size(data), 3, frames, size, size))}
    tiny, large = _parse_input(args.tiny_input, "--tiny-input"), _parse_input(args.large_input, "--large-input")
    cases = {}
    for name in args.models:
        model_cfg = load_config(str(model_config_file(name)), args.overrides).model
        cases[name] = (model_cfg, large if model_cfg.depth >= 50 else tiny)
    return cases


def run_command(args: argparse.Namespace, cfg: Config) -> int:
    if args.repeats < 1:
        raise UserError(f"--repeats={args.repeats} must be at least 1")
    cases = _model_cases(args, cfg)
    NonLocalBlock(8, mode=args.mode)  # an unknown mode fails now, not after the model runs
    for model_cfg, _ in cases.values():  # fail on a bad config before any long measurement
        build_model(model_cfg, NUM_CLASSES)
    grids = nonlocal_grids(args.frames, args.size)
    unknown = [s for s in args.stages if s not in grids]
    if unknown:
        raise UserError(f"--stages: unknown stage {unknown[0]!r}; choose from {', '.join(grids)}")
    device = resolve_device(args.device)
    results = {"models": bench_models(cases, args.repeats, device),
               "nonlocal_memory": bench_nonlocal({s: grids[s] for s in args.stages}, args.frames, args.mode,
                                                 args.repeats, device)}
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2))
        print(f"wrote {args.json}")
    return 0
