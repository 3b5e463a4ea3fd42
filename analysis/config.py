"""Typed schema of the `profile.*` and `visualize.*` config sections."""
from dataclasses import dataclass, field
from typing import Any, Dict, List


@dataclass
class PlacementConfig:
    """One named non-local placement: `model.attention` entries that replace the base model's."""

    name: str = "none"
    attention: List[Dict[str, Any]] = field(default_factory=list)


@dataclass
class ProfileConfig:
    """A sweep of non-local placements to measure (see analysis/profile.py).

    Every combination of placement x frames x size x batch x subsample x implementation is one row;
    `subsample` and `implementation` are written into each attention entry of the placement.
    """

    placements: List[PlacementConfig] = field(
        default_factory=lambda: [PlacementConfig("none", []),
                                 PlacementConfig("res3.1", [{"type": "nonlocal", "stages": [3], "blocks": [1]}]),
                                 PlacementConfig("res4.1", [{"type": "nonlocal", "stages": [4], "blocks": [1]}])])
    frames: List[int] = field(default_factory=lambda: [8])
    sizes: List[int] = field(default_factory=lambda: [64])
    batch: List[int] = field(default_factory=lambda: [2])
    subsample: List[bool] = field(default_factory=lambda: [True])
    implementations: List[str] = field(default_factory=lambda: ["reference", "fused"])
    num_classes: int = 400  # classifier width of the profiled models
    device: str = "auto"  # auto (cuda when present, else cpu) | cpu | cuda | fake (shapes only, CPU kernels)
    budget: str = ""  # e.g. 16GiB; empty: no budget marking
    optimizer_states: int = 1  # per-parameter tensors the optimizer keeps (SGD momentum: 1, AdamW: 2)


@dataclass
class VisualizeConfig:
    """Options of the long-range relation visualization (see analysis/visualize.py)."""

    top_k: int = 5  # partners drawn with arrows (in frames other than the query's)
    fps: float = 4.0  # frame rate of the written MP4
    columns: int = 8  # frames per row of the PNG grid
    panel_size: int = 160  # pixels of one frame panel in the MP4
    iaa_maps: bool = True  # also draw the pyramid head's K attention maps when the model has it


@dataclass
class PredictConfig:
    """Options of `run.py predict` (see analysis/predict.py) and its Grad-CAM (`--explain`)."""

    window_stride: float = 1.0  # seconds between the starts of the timeline's sliding clips
    window_length: float = 0.0  # seconds one window covers; 0: one dense clip's span (TSN models: 2 s)
    top_k: int = 5  # labels listed per video and per window
    timeline_classes: int = 5  # classes drawn in the timeline PNG (the video's top ones)
    batch_size: int = 8  # views per forward pass
    gradcam_layer: str = "res5"  # stage, residual block or attention block, named as `visualize` names them
    gradcam_fps: float = 4.0  # frame rate of the Grad-CAM MP4
