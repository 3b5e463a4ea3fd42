"""Typed schema of the `profile.*` and `visualize.*` config sections."""
from dataclasses import dataclass, field
from typing import Any, Dict, List


@dataclass
class ProfileConfig:
    """A sweep of non-local placements to measure (see analysis/profile.py)."""

    placements: List[Dict[str, Any]] = field(default_factory=list)
    frames: List[int] = field(default_factory=lambda: [32])
    sizes: List[int] = field(default_factory=lambda: [224])
    batch: List[int] = field(default_factory=lambda: [1])
    implementations: List[str] = field(default_factory=lambda: ["reference", "fused"])
    budget: str = ""  # e.g. 16GiB; empty: no budget marking


@dataclass
class VisualizeConfig:
    """Options of the long-range relation visualization (see analysis/visualize.py)."""

    top_k: int = 5
    fps: float = 4.0
