"""`run.py bench mmaction2-step [--frames T --size S --batch B --amp bf16 --rounds R --steps N] [--json FILE]`:
a training step of mmaction2's own NL I3D-R50 against ours with the same weights (bench/vs_mmaction2_step.py)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from analysis.profiling.budget import format_bytes
from models.converters.reference import missing_mmaction2
from bench.vs_mmaction2_step import OUR_VARIANTS, StepBenchSettings, run_step_bench
from configs.compose import Config
from errors import UserError

DEFAULTS = StepBenchSettings()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--frames", type=int, default=DEFAULTS.frames, help="clip frames")
    parser.add_argument("--size", type=int, default=DEFAULTS.size, help="clip height and width")
    parser.add_argument("--batch", type=int, default=DEFAULTS.batch, help="clips per step")
    parser.add_argument("--width", type=float, default=DEFAULTS.width, help="channel multiplier of both networks")
    parser.add_argument("--amp", default=DEFAULTS.amp, help="autocast of both: none | bf16 | fp16 (GPU)")
    parser.add_argument("--rounds", type=int, default=DEFAULTS.rounds, help="interleaved rounds")
    parser.add_argument("--steps", type=int, default=DEFAULTS.steps, help="timed steps per variant and round")
    parser.add_argument("--warmup", type=int, default=DEFAULTS.warmup, help="untimed steps per variant first")
    parser.add_argument("--compile-backend", default=DEFAULTS.compile_backend,
                        help="torch.compile backend of the compiled variants (eager: tracing only)")
    parser.add_argument("--variants", nargs="+", default=list(OUR_VARIANTS), help="our variants to run")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="where to run")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads; 0 keeps torch's default")
    parser.add_argument("--json", help="write the results here")


def run_command(args: argparse.Namespace, cfg: Config) -> int:
    reason = missing_mmaction2()
    if reason:
        raise UserError(f"bench mmaction2-step needs mmaction2's modules; missing: {reason}")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda but no CUDA device is available")
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    settings = StepBenchSettings(args.frames, args.size, args.batch, args.width, args.amp, args.rounds, args.steps,
                                 args.warmup, args.compile_backend, list(args.variants))
    result = run_step_bench(settings, device)
    print(f"NL I3D-R50 (width x{args.width:g}) training step, {args.batch}x{args.frames}x{args.size}^2, "
          f"amp {args.amp}, on {device}, {args.rounds} interleaved rounds of {args.steps} steps; ours = theirs "
          f"converted (eval logits differ by {result['logit_error']:.1e} of max |logit|)")
    for row in result["rows"]:
        peak = "" if row["peak_bytes"] is None else \
            f", peak {format_bytes(row['peak_bytes'])} ({row['peak_vs_mmaction2']:.3f}x)"
        print(f"  {row['name']:<28} {row['clips_per_s']:8.2f} clips/s ({row['speed_vs_mmaction2']:.3f}x){peak}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0
