"""`predict` clips/s of the same videos under several runtimes (PyTorch, onnxruntime), interleaved.

Each round predicts every video with every runtime, the runtime order reversed every other round, so
drift in machine load falls on all of them alike. A clip is one view forwarded: test clips x crops for
the whole-video score plus windows x crops for the timeline; decoding and cropping are timed with them,
as `predict` spends them. The largest score difference between the runtimes is reported with the speeds.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Dict, List, Mapping, Tuple

import torch
from torch import nn

from inference.config import PredictConfig
from inference.predict import predict_video
from engine.config import ExperimentConfig


def bench_predict(runtimes: Mapping[str, Tuple[nn.Module, ExperimentConfig]], videos: List[Path],
                  options: PredictConfig, rounds: int) -> Dict[str, object]:
    """{runtime: {clips, seconds, clips_per_s}, max_score_diff}; `runtimes` maps names to (model, config)."""
    names = list(runtimes)
    device = torch.device("cpu")
    for model, cfg in runtimes.values():  # warm-up: first-call allocations and kernel choice, not timed
        predict_video(model, str(videos[0]), cfg, options, device)
    totals = {name: {"clips": 0, "seconds": 0.0} for name in names}
    worst = 0.0
    for round_index in range(rounds):
        order = names if round_index % 2 == 0 else names[::-1]
        for video in videos:
            scores = {}
            for name in order:
                model, cfg = runtimes[name]
                start = time.perf_counter()
                prediction = predict_video(model, str(video), cfg, options, device)
                totals[name]["seconds"] += time.perf_counter() - start
                totals[name]["clips"] += cfg.test.crops * (cfg.test.clips + len(prediction.window_scores))
                scores[name] = torch.cat([prediction.scores[None], prediction.window_scores])
            first = scores[names[0]]
            worst = max([worst] + [float((first - other).abs().max()) for other in scores.values()])
    for entry in totals.values():
        entry["clips_per_s"] = entry["clips"] / entry["seconds"]
    return {"runtimes": totals, "max_score_diff": worst, "videos": [str(v) for v in videos], "rounds": rounds,
            "threads": torch.get_num_threads()}
