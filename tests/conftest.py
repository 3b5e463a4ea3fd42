"""Shared fixtures: the real clips in ../shared/data (or $VIDEO_TEST_DATA), skipped where absent."""
import os
import subprocess
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


@pytest.fixture(autouse=True)
def _slow_means_it_starts_processes(request, monkeypatch):
    """The `slow` marker means "starts other processes" (loader workers, torchrun jobs, subprocesses,
    installs), which `make test-fast` skips: a test that starts one without the marker fails, saying so."""
    if request.node.get_closest_marker("slow"):
        yield
        return
    started = []
    fork, popen_init = os.fork, subprocess.Popen.__init__

    def recording_fork():
        started.append("os.fork")
        return fork()

    def recording_popen(self, args, *rest, **kwargs):
        started.append(f"subprocess {str(args)[:80]}")
        popen_init(self, args, *rest, **kwargs)

    monkeypatch.setattr(os, "fork", recording_fork)
    monkeypatch.setattr(subprocess.Popen, "__init__", recording_popen)
    yield
    if started:
        pytest.fail(f"this test starts processes ({started[0]}): mark it @pytest.mark.slow", pytrace=False)


@pytest.fixture(scope="session")
def synthetic_dataset(tmp_path_factory):
    """`synthetic_dataset(train_per_class=2, val_per_class=1)`: the built-in synthetic dataset at 48x48,
    written once per size for the whole session. Shared: a test that changes its files copies it first."""
    from configs.compose import load_config
    from data_prep.synthetic import write_dataset

    made = {}

    def make(train_per_class: int = 2, val_per_class: int = 1) -> Path:
        key = (train_per_class, val_per_class)
        if key not in made:
            root = tmp_path_factory.mktemp(f"synthetic_{train_per_class}_{val_per_class}") / "data"
            prep = load_config(None, ["prep.synthetic.size=48", f"prep.synthetic.train_per_class={train_per_class}",
                                      f"prep.synthetic.val_per_class={val_per_class}"]).prep.synthetic
            write_dataset(root, prep, progress=False)
            made[key] = root
        return made[key]

    return make


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models: one torch thread is faster than two fighting over a small shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
