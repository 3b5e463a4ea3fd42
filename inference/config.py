"""Typed schema of the `predict.*` config section."""
from dataclasses import dataclass


@dataclass
class PredictConfig:
    """Options of `run.py predict` (see inference/predict.py) and its Grad-CAM (`--explain`)."""

    window_stride: float = 1.0  # seconds between the starts of the timeline's sliding clips
    window_length: float = 0.0  # seconds one window covers; 0: one dense clip's span (TSN models: 2 s)
    top_k: int = 5  # labels listed per video and per window
    timeline_classes: int = 5  # classes drawn in the timeline PNG (the video's top ones)
    batch_size: int = 8  # views per forward pass
    gradcam_layer: str = "res5"  # stage, residual block or attention block, named as `visualize` names them
    gradcam_fps: float = 4.0  # frame rate of the Grad-CAM MP4
