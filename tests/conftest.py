"""Shared fixtures: the real clips in ../shared/data (or $VIDEO_TEST_DATA), skipped where absent."""
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("VIDEO_TEST_DATA", ROOT.parent / "shared" / "data"))
CLIPS_DIR = SHARED_DATA / "clips"


def real_clips() -> list[Path]:
    """Every real video in the shared folder (empty when the folder is absent)."""
    if not CLIPS_DIR.is_dir():
        return []
    return sorted(p for p in CLIPS_DIR.iterdir() if p.suffix in {".mp4", ".avi", ".mkv"})


@pytest.fixture
def clips_dir() -> Path:
    if not CLIPS_DIR.is_dir():
        pytest.skip(f"real clips folder {CLIPS_DIR} is absent (set VIDEO_TEST_DATA to point at it)")
    return CLIPS_DIR


def write_small_synthetic(root: Path) -> Path:
    """The built-in synthetic dataset at 48x48, 2 training and 1 validation clips per class (20 and 10)."""
    from commands.config import load_config
    from data_prep.synthetic import write_dataset

    prep = load_config(None, ["prep.synthetic.size=48", "prep.synthetic.train_per_class=2",
                              "prep.synthetic.val_per_class=1"]).prep.synthetic
    write_dataset(root, prep, progress=False)
    return root
