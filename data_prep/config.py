"""Typed schema of the `prep.*` config section (the built-in synthetic dataset, Kinetics subsets)."""
from dataclasses import dataclass, field


@dataclass
class SyntheticConfig:
    """Size of the generated dataset; small by default so CPU training takes minutes."""

    train_per_class: int = 40
    val_per_class: int = 10
    frames: int = 16
    size: int = 64  # frame height and width in pixels (even)
    fps: int = 8
    seed: int = 0
    max_noise: float = 8.0  # per-video Gaussian noise sigma is drawn from [0, max_noise]
    keyframe_interval: int = 8
    crf: int = 20  # H.264 quality: lower is closer to the rendered frames


@dataclass
class KineticsConfig:
    """Defaults of `prep kinetics` (its command-line options override them)."""

    short_side: int = 256
    keyframe_interval: int = 16
    crf: int = 23
    per_class: int = 0  # 0: every annotated video
    workers: int = 2


@dataclass
class PrepConfig:
    """Options of `run.py prep`."""

    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    synthetic_if_missing: bool = False  # `train` writes the synthetic dataset to data.root when it has none
    kinetics: KineticsConfig = field(default_factory=KineticsConfig)
