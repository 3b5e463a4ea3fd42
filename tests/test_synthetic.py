"""The built-in synthetic dataset: real H.264 files, deterministic, and classes that need time."""
import csv
import hashlib
import subprocess
import sys

import numpy as np
import pytest

from data_prep.config import SyntheticConfig
from data_prep.synthetic import CLASSES, FLIP_PAIRS, RENDERERS, render_clip, write_dataset
from errors import UserError
from tests.conftest import ROOT
from video.decode import open_video

SMALL = dict(train_per_class=2, val_per_class=1)


def _digests(folder):
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_cli_writes_the_dataset_folder(tmp_path):
    out = tmp_path / "syn"
    overrides = [f"prep.synthetic.{key}={value}" for key, value in SMALL.items()]
    proc = subprocess.run([sys.executable, "run.py", "prep", "synthetic", "--out", str(out), *overrides],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert (out / "labels.txt").read_text().split() == CLASSES
    for split, per_class in (("train", 2), ("val", 1)):
        with open(out / f"{split}.csv") as file:
            rows = list(csv.DictReader(file))
        assert len(rows) == per_class * len(CLASSES)
        assert {row["label"] for row in rows} == set(CLASSES)
        with open_video(out / rows[0]["path"]) as reader:  # a real H.264 file of the configured shape
            cfg = SyntheticConfig()
            assert (reader.num_frames, reader.height, reader.width) == (cfg.frames, cfg.size, cfg.size)
            assert reader.fps == cfg.fps
    with open(out / rows[0]["path"], "rb") as file:
        assert b"ftyp" in file.read(64)


def test_generation_is_deterministic_under_the_seed(tmp_path):
    write_dataset(tmp_path / "a", SyntheticConfig(**SMALL), progress=False)
    write_dataset(tmp_path / "b", SyntheticConfig(**SMALL), progress=False)
    write_dataset(tmp_path / "c", SyntheticConfig(**SMALL, seed=1), progress=False)
    assert _digests(tmp_path / "a") == _digests(tmp_path / "b")
    changed = [name for name, digest in _digests(tmp_path / "c").items()
               if name.endswith(".mp4") and _digests(tmp_path / "a")[name] != digest]
    assert len(changed) == 3 * len(CLASSES)


@pytest.mark.parametrize("forward, backward", [("move_right", "move_left"), ("move_down", "move_up"),
                                               ("grow", "shrink"), ("rotate_cw", "rotate_ccw")])
def test_reversal_pairs_are_the_same_frames_backwards(forward, backward):
    cfg = SyntheticConfig()
    clip = RENDERERS[forward](np.random.default_rng(7), cfg)
    assert np.array_equal(RENDERERS[backward](np.random.default_rng(7), cfg), clip[::-1])
    assert not np.array_equal(clip, clip[::-1])


def _marker_side(frame: np.ndarray, background: np.ndarray) -> str:
    """Which half of the frame differs most from the clip's background."""
    difference = np.abs(frame.astype(np.float32) - background).mean(axis=2)
    half = frame.shape[1] // 2
    return "left" if difference[:, :half].sum() > difference[:, half:].sum() else "right"


@pytest.mark.parametrize("label", ["cue_event_same", "cue_event_opposite"])
def test_cue_and_event_sides_follow_the_label(label):
    cfg = SyntheticConfig()
    sides = {"left": 0, "right": 0}
    for number in range(12):
        clip = render_clip(label, "train", number, cfg)
        background = np.median(clip[cfg.frames // 3: -cfg.frames // 3].astype(np.float32), axis=0)
        cue, event = _marker_side(clip[0], background), _marker_side(clip[-1], background)
        assert (cue == event) == (label == "cue_event_same")
        sides[cue] += 1
    assert min(sides.values()) >= 2  # the cue side itself is random: one frame says nothing of the class


def test_flip_pairs_name_real_classes():
    assert all(a in CLASSES and b in CLASSES for a, b in FLIP_PAIRS)


@pytest.mark.parametrize("key, value", [("size", 15), ("size", 63), ("frames", 3), ("train_per_class", 0)])
def test_bad_sizes_are_user_errors_naming_the_key(tmp_path, key, value):
    with pytest.raises(UserError, match=key):
        write_dataset(tmp_path, SyntheticConfig(**{key: value}), progress=False)


@pytest.mark.parametrize("size", [16, 24, 32, 40])
def test_every_class_renders_at_every_admitted_small_size(size):
    """Translations shorten their travel to what fits, so small frames never fail (size 32 once did)."""
    cfg = SyntheticConfig(size=size)
    for label in CLASSES:
        for number in range(30):
            frames = render_clip(label, "train", number, cfg)
            assert frames.shape == (cfg.frames, size, size, 3) and frames.dtype == np.uint8
