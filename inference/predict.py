"""What a trained model says about one video: labels for the whole video and a timeline of sliding windows.

The whole-video scores use the same views as `test` (`test.clips` x `test.crops`, softmax-averaged),
decoded and transformed by the same functions. The timeline slides a window of one clip's span (or
`predict.window_length` seconds) every `predict.window_stride` seconds over the video, the last window
ending at the last frame; each window is sampled as a test clip of that stretch, with the test crops.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Sequence, Tuple, Type, TypeVar

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

from engine.checkpoint import load_trained
from engine.config import ExperimentConfig, config_from_dict
from engine.evaluate import view_probabilities
from errors import UserError
from inference.config import PredictConfig
from inference.onnx_model import is_onnx, load_onnx
from video.dataset import make_views
from video.safe_read import read_clips, read_frames
from video.sampling import clip_span, window_clips
from video.transforms import build_test_transform

TSN_WINDOW_SECONDS = 2.0
C = TypeVar("C", bound=ExperimentConfig)


@dataclass
class VideoPrediction:
    """Scores of one video: the whole video (classes,), and per window (windows, classes) with times."""

    path: str
    scores: torch.Tensor
    window_scores: torch.Tensor
    starts: np.ndarray  # seconds
    ends: np.ndarray

    def top(self, labels: Sequence[str], k: int, scores: torch.Tensor | None = None) -> List[Dict]:
        scores = self.scores if scores is None else scores
        values, indices = scores.topk(min(k, len(labels)))
        return [{"label": labels[i], "score": round(float(v), 6)} for v, i in zip(values.tolist(), indices.tolist())]

    def to_json(self, labels: Sequence[str], k: int) -> Dict:
        windows = [{"start": round(float(a), 3), "end": round(float(b), 3), "top": self.top(labels, k, s)}
                   for a, b, s in zip(self.starts, self.ends, self.window_scores)]
        return {"path": self.path, "top": self.top(labels, k), "windows": windows}


def load_predictor(path: str | Path, schema: Type[C] = ExperimentConfig) -> Tuple[nn.Module, C, List[str]]:
    """`engine.checkpoint.load_trained`, or for a `.onnx` file from `run.py export` its onnxruntime model
    with the config sections and class names its metadata holds (inference/onnx_model.py)."""
    if not is_onnx(path):
        return load_trained(path, schema)
    model, sections, labels = load_onnx(path)
    return model, config_from_dict(sections, schema), labels


def check_options(options: PredictConfig) -> None:
    """Raise UserError naming the `predict.*` key with an impossible value."""
    for key in ("window_stride", "gradcam_fps"):
        if getattr(options, key) <= 0:
            raise UserError(f"predict.{key}={getattr(options, key)}: must be positive")
    if options.window_length < 0:
        raise UserError(f"predict.window_length={options.window_length}: must be >= 0 (0: one clip's span)")
    for key in ("top_k", "timeline_classes", "batch_size"):
        if getattr(options, key) < 1:
            raise UserError(f"predict.{key}={getattr(options, key)}: must be at least 1")


def _window_frames(cfg: ExperimentConfig, options: PredictConfig, fps: float) -> int:
    if options.window_length > 0:
        return max(1, round(options.window_length * fps))
    if cfg.data.sampling.mode == "segments":
        return max(1, round(TSN_WINDOW_SECONDS * fps))
    return clip_span(cfg.data.sampling, fps)


def _scores(model: nn.Module, views: torch.Tensor, device: torch.device, cfg: ExperimentConfig, batch: int) -> torch.Tensor:
    """Softmax scores of views (V, 3, T, H, W), `batch` views per forward pass."""
    return torch.cat([view_probabilities(model, chunk, device, cfg) for chunk in views.split(batch)])


def predict_video(model: nn.Module, path: str, cfg: ExperimentConfig, options: PredictConfig,
                  device: torch.device) -> VideoPrediction:
    """Whole-video and window scores of `model` (eval mode, on `device`) for the video at `path`."""
    test_views = build_test_transform(cfg.data.transforms, cfg.test.crops)
    crops, short_side = cfg.test.crops, test_views.source_short_side
    whole = read_clips(path, cfg.data, None, cfg.test.clips, short_side)
    scores = _scores(model, make_views(whole.frames, test_views), device, cfg, options.batch_size).mean(0)
    fps = whole.fps or 25.0
    window = _window_frames(cfg, options, fps)
    first, indices = window_clips(whole.num_frames, cfg.data.sampling, fps, window,
                                  max(1, round(options.window_stride * fps)))
    window_scores = []
    per_batch = max(1, options.batch_size // crops)
    for chunk in np.array_split(indices, max(1, -(-len(indices) // per_batch))):
        frames = read_frames(path, cfg.data, chunk, short_side).frames  # the same guards as training's reads
        views = make_views(frames, test_views)  # (windows * crops, 3, T, h, w)
        window_scores.append(_scores(model, views, device, cfg, options.batch_size).view(len(chunk), crops, -1).mean(1))
    length = min(window, whole.num_frames)
    return VideoPrediction(str(path), scores, torch.cat(window_scores), first / fps, (first + length) / fps)


def save_timeline(path: Path, prediction: VideoPrediction, labels: Sequence[str], classes: int) -> Path:
    """Scores over time (one point per window, at its centre) of the classes that win a window, in the
    order they first do, then of the whole video's top classes, `classes` in all."""
    winners = prediction.window_scores.argmax(1).tolist() + prediction.scores.topk(min(classes, len(labels))).indices.tolist()
    top = list(dict.fromkeys(winners))[:classes]
    centres = (prediction.starts + prediction.ends) / 2
    fig = Figure(figsize=(8, 3.2), layout="constrained")
    ax = fig.subplots()
    for index in top:
        ax.plot(centres, prediction.window_scores[:, index].numpy(), marker="o", markersize=3, label=labels[index])
    ax.set_xlim(0, float(prediction.ends.max()))
    ax.set_ylim(0, 1)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("score")
    ax.set_title(f"{Path(prediction.path).name}: the classes that win a window, over {len(centres)} windows",
                 fontsize=9)
    ax.legend(fontsize=7, loc="upper right")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path
