"""Expand the `profile.*` config into the list of cases to measure (one per output row)."""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

from omegaconf import OmegaConf

from errors import UserError

IMPLEMENTATIONS = ("reference", "fused", "auto")
SWEPT_TYPE = "nonlocal"  # the block type whose `implementation` and `subsample` the sweep sets


@dataclass(frozen=True)
class ProfileCase:
    """One model and input to measure: a placement with the swept options written in."""

    placement: str
    attention: Tuple[Dict[str, Any], ...]
    frames: int
    size: int
    batch: int
    implementation: Optional[str]  # None when the placement has no non-local block
    subsample: Optional[bool]

    @property
    def clip_shape(self) -> Tuple[int, int, int, int, int]:
        return (self.batch, 3, self.frames, self.size, self.size)


def _positive_ints(values: Any, key: str) -> List[int]:
    values = list(values)
    if not values or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values):
        raise UserError(f"profile.{key}={values} must be a non-empty list of positive integers")
    return values


def _is_swept(entry: Any) -> bool:
    return isinstance(entry, dict) and entry.get("type") == SWEPT_TYPE


def _with_options(entries: List[Dict[str, Any]], implementation: str, subsample: bool) -> Tuple[Dict[str, Any], ...]:
    """Non-local entries get the swept options unless they fix them themselves."""
    placed = []
    for entry in entries:
        if _is_swept(entry):
            entry = {"implementation": implementation, "subsample": subsample, **entry}
        placed.append(entry)
    return tuple(placed)


def expand_sweep(profile_cfg: Any) -> List[ProfileCase]:
    """Every placement x frames x size x batch, times subsample x implementation where a non-local
    block is placed (a placement without one is measured once per input)."""
    frames = _positive_ints(profile_cfg.frames, "frames")
    sizes = _positive_ints(profile_cfg.sizes, "sizes")
    batches = _positive_ints(profile_cfg.batch, "batch")
    implementations = list(profile_cfg.implementations)
    bad = [name for name in implementations if name not in IMPLEMENTATIONS]
    if not implementations or bad:
        raise UserError(f"profile.implementations={implementations} must list some of {', '.join(IMPLEMENTATIONS)}")
    subsamples = list(profile_cfg.subsample)
    if not subsamples:
        raise UserError("profile.subsample must list at least one of true, false")
    placements = list(profile_cfg.placements)
    names = [p.name for p in placements]
    if not placements or len(set(names)) != len(names):
        raise UserError(f"profile.placements must be a non-empty list with distinct names, got {names}")
    cases = []
    for placement in placements:
        entries = OmegaConf.to_container(placement.attention)
        swept = any(_is_swept(entry) for entry in entries)
        options = list(itertools.product(subsamples, implementations)) if swept else [(None, None)]
        for t, size, batch, (subsample, implementation) in itertools.product(frames, sizes, batches, options):
            attention = _with_options(entries, implementation, subsample) if swept else tuple(entries)
            cases.append(ProfileCase(placement.name, attention, t, size, batch, implementation, subsample))
    return cases
