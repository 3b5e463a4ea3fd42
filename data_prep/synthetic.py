"""The built-in synthetic dataset: real H.264 mp4 clips whose classes need temporal reasoning.

Classes come in pairs that only time tells apart:
- reversal pairs, the same frames played backwards: move_left/move_right, move_up/move_down,
  grow/shrink, rotate_cw/rotate_ccw (an asymmetric shape, so the direction is visible);
- a long-range XOR pair: a brief cue in the first frames and an event in the last frames, each on the
  left or the right; `cue_event_same` when they are on the same side, `cue_event_opposite` otherwise.
  Every single frame is equally likely in both classes, so no per-frame classifier can solve it.
Colours, shapes, sizes, speeds, positions, backgrounds and noise are random; the whole dataset is a
pure function of `prep.synthetic.*` (seed included). `run.py prep synthetic --out DIR` writes it.
"""
from __future__ import annotations

import csv
from functools import partial
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
from tqdm import tqdm

from data_prep.config import PrepConfig, SyntheticConfig
from errors import UserError
from video.config import DataConfig
from video.encode import write_video

Renderer = Callable[[np.random.Generator, SyntheticConfig], np.ndarray]  # -> uint8 (T, H, W, 3)


# ---- shapes: boolean masks in shape-local coordinates (unit size, centred at 0) ----

def _disk(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return u * u + v * v < 1.0


def _square(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.maximum(np.abs(u), np.abs(v)) < 0.8


def _ell(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """An L: no rotational symmetry and chiral, so its turning direction is always visible."""
    stem = (np.abs(u + 0.45) < 0.3) & (np.abs(v) < 1.0)
    foot = (np.abs(v - 0.7) < 0.3) & (u > -0.75) & (u < 0.9)
    return stem | foot


def _wedge(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """A long isosceles triangle pointing along +u: asymmetric under any rotation below 360 degrees."""
    return (u > -0.8) & (u < 1.0) & (np.abs(v) < 0.45 * (1.0 - u))


SHAPES = {"disk": _disk, "square": _square, "ell": _ell, "wedge": _wedge}
ASYMMETRIC_SHAPES = ("ell", "wedge")


def _draw(frames: np.ndarray, shape: str, colour: np.ndarray, cx: np.ndarray, cy: np.ndarray,
          radius: np.ndarray, angle: np.ndarray) -> None:
    """Paint `shape` into every frame t at centre (cx[t], cy[t]), size radius[t], rotation angle[t].

    Angles are in image coordinates (y points down), so a growing angle turns clockwise on screen.
    """
    height, width = frames.shape[1:3]
    dx = np.arange(width, dtype=np.float32)[None, None, :] - cx[:, None, None]
    dy = np.arange(height, dtype=np.float32)[None, :, None] - cy[:, None, None]
    cos, sin = np.cos(angle)[:, None, None], np.sin(angle)[:, None, None]
    u = (cos * dx + sin * dy) / radius[:, None, None]
    v = (-sin * dx + cos * dy) / radius[:, None, None]
    frames[SHAPES[shape](u, v)] = colour


# ---- scene: background, colours, noise ----

def _background(rng: np.random.Generator, cfg: SyntheticConfig) -> np.ndarray:
    """A random colour with a random linear gradient, repeated over time, float32 (T, H, W, 3)."""
    size = cfg.size
    base = rng.uniform(20, 235, size=3)
    direction = rng.uniform(0, 2 * np.pi)
    ramp = np.cos(direction) * np.linspace(-1, 1, size)[None, :] + np.sin(direction) * np.linspace(-1, 1, size)[:, None]
    image = base + rng.uniform(0, 30) * ramp[..., None] * rng.choice([-1, 1], size=3)
    return np.repeat(image[None].astype(np.float32), cfg.frames, axis=0)


def _contrasting_colour(rng: np.random.Generator, background: np.ndarray) -> np.ndarray:
    """A colour that differs from the mean background by at least 80 grey levels on average."""
    mean = background.reshape(-1, 3).mean(axis=0)
    while True:
        colour = rng.uniform(0, 255, size=3)
        if np.abs(colour - mean).mean() >= 80:
            return colour.astype(np.float32)


def _finish(rng: np.random.Generator, cfg: SyntheticConfig, frames: np.ndarray) -> np.ndarray:
    """Add per-pixel Gaussian noise and quantize to uint8."""
    sigma = np.float32(rng.uniform(0, cfg.max_noise))
    frames += sigma * rng.standard_normal(size=frames.shape, dtype=np.float32)
    return np.clip(frames, 0, 255, out=frames).astype(np.uint8)


def _track(start: float, stop: float, count: int) -> np.ndarray:
    return np.linspace(start, stop, count, dtype=np.float32)


# ---- the forward member of each pair; the partner is the same clip reversed ----

def _render_translation(rng: np.random.Generator, cfg: SyntheticConfig, axis: int) -> np.ndarray:
    """A shape crossing the frame along `axis` (1: rightwards, 0: downwards) with a little drift."""
    frames, size, count = _background(rng, cfg), cfg.size, cfg.frames
    radius = rng.uniform(0.09, 0.16) * size
    margin = radius + 2
    travel = min(rng.uniform(0.35, 0.6) * size, size - 2 * margin)  # small frames: as far as fits
    start = rng.uniform(margin, max(margin, size - margin - travel))
    along = _track(start, start + travel, count)
    across_start = rng.uniform(margin, size - margin)
    across = np.clip(_track(across_start, across_start + rng.uniform(-0.1, 0.1) * size, count), margin, size - margin)
    cx, cy = (along, across) if axis == 1 else (across, along)
    shape = str(rng.choice(list(SHAPES)))
    _draw(frames, shape, _contrasting_colour(rng, frames), cx, cy, np.full(count, radius, np.float32),
          np.full(count, rng.uniform(0, 2 * np.pi), np.float32))
    return _finish(rng, cfg, frames)


def _render_growth(rng: np.random.Generator, cfg: SyntheticConfig) -> np.ndarray:
    """A shape that grows steadily by a factor of 2 to 3.5 in place."""
    frames, size, count = _background(rng, cfg), cfg.size, cfg.frames
    final = rng.uniform(0.2, 0.3) * size
    radius = _track(final / rng.uniform(2.0, 3.5), final, count)
    cx = np.full(count, rng.uniform(final, size - final), np.float32)
    cy = np.full(count, rng.uniform(final, size - final), np.float32)
    shape = str(rng.choice(list(SHAPES)))
    _draw(frames, shape, _contrasting_colour(rng, frames), cx, cy, radius,
          np.full(count, rng.uniform(0, 2 * np.pi), np.float32))
    return _finish(rng, cfg, frames)


def _render_rotation(rng: np.random.Generator, cfg: SyntheticConfig) -> np.ndarray:
    """An asymmetric shape turning clockwise on screen by 15 to 35 degrees a frame."""
    frames, size, count = _background(rng, cfg), cfg.size, cfg.frames
    radius = rng.uniform(0.2, 0.3) * size
    cx = np.full(count, rng.uniform(radius + 2, size - radius - 2), np.float32)
    cy = np.full(count, rng.uniform(radius + 2, size - radius - 2), np.float32)
    step = np.deg2rad(rng.uniform(15, 35))
    angle = rng.uniform(0, 2 * np.pi) + step * np.arange(count, dtype=np.float32)
    shape = str(rng.choice(ASYMMETRIC_SHAPES))
    _draw(frames, shape, _contrasting_colour(rng, frames), cx, cy, np.full(count, radius, np.float32), angle)
    return _finish(rng, cfg, frames)


def _render_cue_event(rng: np.random.Generator, cfg: SyntheticConfig, same: bool) -> np.ndarray:
    """A square cue in the first frames and a disk event in the last frames, each left or right.

    Both sides are drawn independently at random for the cue; the event side follows from `same`.
    Sides keep clear of the outer eighth of the frame, so crops do not cut them off.
    """
    frames, size, count = _background(rng, cfg), cfg.size, cfg.frames
    span = max(2, (count + 2) // 5)
    cue_left = bool(rng.integers(2))
    event_left = cue_left if same else not cue_left
    for left, shape, times in ((cue_left, "square", slice(0, span)), (event_left, "disk", slice(count - span, count))):
        radius = rng.uniform(0.12, 0.16) * size
        cx = rng.uniform(size / 8 + radius, size / 2 - radius)
        cx = cx if left else size - cx
        cy = rng.uniform(size / 8 + radius, size * 7 / 8 - radius)
        ones = np.ones(span, np.float32)
        _draw(frames[times], shape, _contrasting_colour(rng, frames), cx * ones, cy * ones, radius * ones, 0 * ones)
    return _finish(rng, cfg, frames)


def _reversed(render: Renderer) -> Renderer:
    return lambda rng, cfg: render(rng, cfg)[::-1]


_move_right = partial(_render_translation, axis=1)
_move_down = partial(_render_translation, axis=0)

RENDERERS: Dict[str, Renderer] = {
    "move_left": _reversed(_move_right),
    "move_right": _move_right,
    "move_up": _reversed(_move_down),
    "move_down": _move_down,
    "grow": _render_growth,
    "shrink": _reversed(_render_growth),
    "rotate_cw": _render_rotation,
    "rotate_ccw": _reversed(_render_rotation),
    "cue_event_same": partial(_render_cue_event, same=True),
    "cue_event_opposite": partial(_render_cue_event, same=False),
}
CLASSES: List[str] = list(RENDERERS)
# A horizontal flip turns each of these classes into the other (the XOR pair keeps its label).
FLIP_PAIRS: List[Tuple[str, str]] = [("move_left", "move_right"), ("rotate_cw", "rotate_ccw")]
SPLITS = {"train": 0, "val": 1}


def render_clip(label: str, split: str, number: int, cfg: SyntheticConfig) -> np.ndarray:
    """The frames of one clip; its own RNG stream makes every clip independent of the others."""
    rng = np.random.default_rng([cfg.seed, SPLITS[split], CLASSES.index(label), number])
    return RENDERERS[label](rng, cfg)


def _check(cfg: SyntheticConfig) -> None:
    if cfg.size < 16 or cfg.size % 2:
        raise UserError(f"prep.synthetic.size={cfg.size}: must be even and at least 16")
    if cfg.frames < 6:
        raise UserError(f"prep.synthetic.frames={cfg.frames}: need at least 6 frames for cue and event")
    if cfg.train_per_class < 1 or cfg.val_per_class < 1:
        raise UserError("prep.synthetic.train_per_class and val_per_class must be at least 1")


def writer_if_missing(data: DataConfig, prep: PrepConfig) -> Optional[Callable[[], None]]:
    """The action that writes the synthetic dataset (`prep.synthetic`) to `data.root` when it has no
    labels.txt; None unless `prep.synthetic_if_missing` and the data are folders (never shards). The answer
    depends on the config only, so every rank of a job gets the same one and all can wait for rank 0."""
    if not prep.synthetic_if_missing or data.format != "folders":
        return None
    root, cfg = Path(data.root), prep.synthetic

    def write() -> None:
        if not (root / "labels.txt").is_file():
            print(f"writing the built-in synthetic dataset to {root}", flush=True)
            write_dataset(root, cfg, progress=False)

    return write


def write_dataset(out: Path, cfg: SyntheticConfig, progress: bool = True) -> Dict[str, int]:
    """Write `out/{train,val}/*.mp4`, `train.csv`, `val.csv`, `labels.txt` and `flip_pairs.txt`."""
    _check(cfg)
    jobs = [(split, label, number) for split, per_class in (("train", cfg.train_per_class), ("val", cfg.val_per_class))
            for label in CLASSES for number in range(per_class)]
    rows: Dict[str, List[Tuple[str, str]]] = {split: [] for split in SPLITS}
    for split in SPLITS:
        (out / split).mkdir(parents=True, exist_ok=True)
    for split, label, number in tqdm(jobs, desc="synthetic clips", unit="clip", disable=not progress):
        relative = f"{split}/{label}_{number:04d}.mp4"
        write_video(out / relative, render_clip(label, split, number, cfg), cfg.fps,
                    keyframe_interval=cfg.keyframe_interval, crf=cfg.crf)
        rows[split].append((relative, label))
    for split, split_rows in rows.items():
        with open(out / f"{split}.csv", "w", newline="") as file:
            writer = csv.writer(file)
            writer.writerow(["path", "label"])
            writer.writerows(split_rows)
    (out / "labels.txt").write_text("".join(f"{label}\n" for label in CLASSES))
    (out / "flip_pairs.txt").write_text("".join(f"{a},{b}\n" for a, b in FLIP_PAIRS))
    return {split: len(split_rows) for split, split_rows in rows.items()}
