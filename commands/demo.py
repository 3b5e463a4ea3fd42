"""`run.py demo --out DIR`: the end-to-end run behind `make demo`.

Trains the tiny non-local I3D with the pyramid attention head (configs/experiments/demo.yaml, which
writes the built-in synthetic dataset first if it is absent), tests it, draws a long-range relation
visualization of a cue/event validation video, profiles non-local placements, writes DIR/summary.json.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any, Dict

from omegaconf import OmegaConf

from analysis.profiling.profile import run_profile
from analysis.relations.visualize import visualize
from configs.compose import CONFIG_DIR, Config, load_config
from data_prep.synthetic import writer_if_missing
from engine.checkpoint import load_trained
from engine.distributed import init_distributed
from engine.evaluate import run_test
from engine.run_log import log_images
from engine.train import train
from errors import UserError

DEMO_CONFIG = CONFIG_DIR / "experiments" / "demo.yaml"
VISUALIZED_CLASS = "cue_event_opposite"  # its answer needs a relation between the first and last frames


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="runs/demo", help="folder for the run and summary.json")


def first_video_of(root: Path, split: str, label: str) -> Path:
    """The first `split` video labelled `label` (else the split's first video)."""
    rows = [line.split(",") for line in (root / f"{split}.csv").read_text().splitlines()[1:] if line]
    if not rows:
        raise UserError(f"{root / f'{split}.csv'} lists no videos")
    path = next((p for p, lab in rows if lab.strip() == label), rows[0][0])
    return Path(path) if Path(path).is_absolute() else root / path


def _relative(path: Any, out: Path) -> str:
    path = Path(path)
    return str(path.relative_to(out)) if path.is_relative_to(out) else str(path)


def run_demo(cfg: Config, out: Path) -> Dict[str, Any]:
    """Every stage of the demo; returns the summary written to `out/summary.json`."""
    started = time.perf_counter()
    cfg = OmegaConf.merge(cfg, {"run": {"output_dir": str(out)}})
    trained = train(cfg, writer_if_missing(cfg.data, cfg.prep))
    checkpoint = Path(trained["best_checkpoint"])
    model, _, labels = load_trained(checkpoint)
    results = run_test(model, labels, cfg, out, init_distributed(cfg.trainer.device))
    video = first_video_of(Path(cfg.data.root), cfg.test.split, VISUALIZED_CLASS)
    figures = visualize(model, cfg.data, labels, str(video), out / "visualization", cfg.visualize, None, "auto",
                        str(checkpoint))
    log_images(cfg, out / "visualization", "visualize", figures)
    run_profile(cfg.model, cfg.profile, out / "profile")
    summary = {
        "val_top1": results["top1"], "val_top5": results["top5"], "mean_class_acc": results["mean_class_acc"],
        "train_seconds": round(trained["train_seconds"], 1), "checkpoint": _relative(checkpoint, out),
        "visualization": _relative(figures["png"], out), "profile": _relative(out / "profile" / "profile.json", out),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(f"demo finished in {time.perf_counter() - started:.0f} s: " + json.dumps(summary))
    return summary


def run_command(args: argparse.Namespace, cfg: Config) -> int:
    """Use configs/experiments/demo.yaml unless --config names another file."""
    if args.config is None:
        cfg = load_config(str(DEMO_CONFIG), args.overrides)
    run_demo(cfg, Path(args.out))
    return 0
