"""Typed schema of the `profile.*` config section: the placements, shapes and budget of a sweep."""
from dataclasses import dataclass, field
from typing import Any, Dict, List


@dataclass
class PlacementConfig:
    """One named non-local placement: `model.attention` entries that replace the base model's."""

    name: str = "none"
    attention: List[Dict[str, Any]] = field(default_factory=list)


@dataclass
class ProfileConfig:
    """A sweep of non-local placements to measure (see analysis/profiling/profile.py).

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
