"""`run.py bench memory --videos DIR [--decodes N] [--json FILE]`: a loader worker's RSS growth per 1000
decodes, per backend, decoding in the worker itself (data.decode_timeout=0) and in a child per video."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from bench.worker_memory import measure
from errors import UserError
from video.decode import BACKENDS
from video.files import list_videos


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--videos", type=Path, required=True, help="folder of videos decoded round-robin")
    parser.add_argument("--decodes", type=int, default=2000, help="decodes measured per backend and mode")
    parser.add_argument("--short-side", type=int, default=64, help="short side frames are scaled to")
    parser.add_argument("--json", type=Path, help="write the rows here")


def run_command(args: argparse.Namespace, cfg) -> int:
    if args.decodes < 1:
        raise UserError(f"--decodes={args.decodes}: give at least 1")
    videos = [str(path) for path in list_videos(args.videos)]
    rows = []
    for backend in sorted(BACKENDS):
        for timeout in (0.0, 60.0):
            data = cfg.data
            data.backend, data.decode_timeout = backend, timeout
            row = {"backend": backend, "decode_timeout": timeout, "decodes": args.decodes,
                   **measure(videos, data, args.decodes, args.short_side)}
            rows.append(row)
            mode = "child per video" if timeout else "in the worker"
            print(f"{backend:7s} {mode:16s} RSS {row['rss_start_bytes'] / 2**20:7.1f} -> "
                  f"{row['rss_end_bytes'] / 2**20:7.1f} MiB: {row['growth_bytes_per_1000'] / 2**20:+.2f} MiB "
                  f"per 1000 decodes", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"videos": len(videos), "rows": rows}, indent=1))
    return 0
