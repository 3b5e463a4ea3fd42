"""`run.py profile [checkpoint=PATH] --out DIR [--json FILE] [--budget 16GiB]`: memory and FLOPs of
non-local placements.

Without `--config` the sweep is configs/profile/default.yaml. With `checkpoint=PATH` (e.g. a converted
published model) the placements are swept over that checkpoint's network instead of the config's model.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from analysis.profiling.profile import run_profile
from configs.compose import CONFIG_DIR, Config, load_config
from engine.checkpoint import load_trained

DEFAULT_SWEEP = CONFIG_DIR / "profile" / "default.yaml"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="folder for profile.json, profile.md and profile.png")
    parser.add_argument("--json", help="also write the JSON rows to this file")
    parser.add_argument("--budget", help="memory budget such as 16GiB (overrides profile.budget)")


def run_command(args: argparse.Namespace, cfg: Config) -> int:
    if args.config is None:
        cfg = load_config(str(DEFAULT_SWEEP), args.overrides)
    model_cfg = load_trained(cfg.checkpoint)[1].model if cfg.checkpoint else cfg.model
    result = run_profile(model_cfg, cfg.profile, args.out, args.json, args.budget)
    unmodelled = sorted({name for row in result["rows"] for name in row["unmodelled_layers"]})
    if unmodelled:
        print(f"note: no memory rule for {', '.join(unmodelled)}; the prediction leaves them out")
    print(f"profile: {len(result['rows'])} rows in {result['seconds']:.1f} s on {result['device']}, "
          f"worst prediction error {100 * result['worst_prediction_error']:.2f}%; "
          f"wrote {Path(args.out) / 'profile.json'}, profile.md, profile.png")
    return 0
