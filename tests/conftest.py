"""Shared fixtures: the real clips in ../shared/data (or $VIDEO_TEST_DATA), skipped where absent."""
import os
from pathlib import Path

import pytest
import torch

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


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models: one torch thread is faster than two fighting over a small shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
