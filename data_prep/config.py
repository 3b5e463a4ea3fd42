"""Typed schema of the `prep.*` config section (the built-in synthetic dataset)."""
from dataclasses import dataclass, field


@dataclass
class SyntheticConfig:
    """Size of the generated dataset; small by default so CPU training takes minutes."""

    train_per_class: int = 40
    val_per_class: int = 10
    frames: int = 16
    size: int = 64
    fps: int = 8
    seed: int = 0


@dataclass
class PrepConfig:
    """Options of `run.py prep`."""

    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
