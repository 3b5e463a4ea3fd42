"""`run.py bench predict checkpoint=PATH --onnx MODEL.onnx --video FILE [FILE ...] [--rounds N] [--threads N] [--json FILE]`:
`predict` clips/s of a checkpoint under PyTorch and of its ONNX export under onnxruntime, on the same
videos in one interleaved run (bench/predict_runtimes.py)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from omegaconf import OmegaConf

from bench.predict_runtimes import bench_predict
from configs.compose import Config, checkpoint_path
from engine.checkpoint import load_trained
from errors import UserError
from inference.predict import load_predictor
from inference.view_metadata import VIEW_KEYS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--onnx", required=True, type=Path, help="the checkpoint's export (run.py export)")
    parser.add_argument("--video", required=True, type=Path, nargs="+", help="video files to predict")
    parser.add_argument("--rounds", type=int, default=2, help="passes over the videos per runtime")
    parser.add_argument("--threads", type=int, default=0, help="torch and onnxruntime threads (0: torch's default)")
    parser.add_argument("--json", type=Path, help="also write the results here")


def run_command(args: argparse.Namespace, cfg: Config) -> int:
    if args.rounds < 1:
        raise UserError(f"--rounds={args.rounds} must be at least 1")
    missing = [str(v) for v in args.video if not v.is_file()]
    if missing:
        raise UserError(f"--video {missing[0]}: no such file")
    path = checkpoint_path(cfg, "bench predict")
    if args.threads > 0:
        torch.set_num_threads(args.threads)  # before the onnxruntime session, which takes torch's count
    model, trained, _ = load_trained(path, Config)
    exported, exported_cfg, _ = load_predictor(args.onnx, Config)
    different = [key for key in VIEW_KEYS if OmegaConf.select(trained, key) != OmegaConf.select(exported_cfg, key)]
    if different:
        key = different[0]
        raise UserError(f"--onnx {args.onnx} was exported for another view than {path}: {key} is "
                        f"{OmegaConf.select(exported_cfg, key)}, not {OmegaConf.select(trained, key)}")
    result = bench_predict({"torch": (model, trained), "onnxruntime": (exported, exported_cfg)}, args.video,
                           trained.predict, args.rounds)
    speeds = result["runtimes"]
    for name, entry in speeds.items():
        print(f"{name:>12}: {entry['clips_per_s']:7.2f} clips/s ({entry['clips']} clips in {entry['seconds']:.1f} s)")
    print(f"onnxruntime / torch: {speeds['onnxruntime']['clips_per_s'] / speeds['torch']['clips_per_s']:.2f}x "
          f"on {len(args.video)} videos x {args.rounds} rounds, threads={result['threads']}; "
          f"max |score diff| {result['max_score_diff']:.1e}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0
