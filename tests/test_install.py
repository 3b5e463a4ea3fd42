"""The project installs like a package: a copy of the tracked files installed into a fresh target gives a
`video-nl` command that works from outside the checkout, configs and label maps included."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT


def tracked_copy(out: Path) -> Path:
    """The files git tracks (a fresh clone's content), so building leaves nothing in the checkout."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in filter(None, files.decode().split("\0")):
        if (ROOT / name).is_file():
            (out / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, out / name)
    return out


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_installed_video_nl_runs_from_outside_the_checkout(tmp_path):
    source, target, work = tracked_copy(tmp_path / "src"), tmp_path / "site", tmp_path / "elsewhere"
    work.mkdir()
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(source)], check=True, capture_output=True, timeout=500)
    command = target / "bin" / "video-nl"
    env = {**os.environ, "PYTHONPATH": str(target)}
    usage = subprocess.run([str(command), "--help"], cwd=work, env=env, capture_output=True, text=True, timeout=120)
    assert usage.returncode == 0 and "usage: video-nl <command>" in usage.stdout and "bench decode" in usage.stdout
    # a tiny profile: the default sweep comes from the installed configs/ (package data), shapes only
    done = subprocess.run([str(command), "profile", "--out", "prof", "profile.device=fake", "profile.frames=[4]",
                           "profile.sizes=[32]", "profile.batch=[2]", "profile.implementations=[fused]",
                           "profile.subsample=[true]",
                           "profile.placements=[{name: res3.1, attention: [{type: nonlocal, stages: [3], blocks: [1]}]}]"],
                          cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = json.loads((work / "prof" / "profile.json").read_text())["rows"]
    assert rows and all(row["frames"] == 4 for row in rows)
    import_check = "import configs.compose as c, run; print(c.CONFIG_DIR); print(run.__file__)"
    where = subprocess.run([sys.executable, "-c", import_check], cwd=work, env=env, capture_output=True, text=True)
    config_dir, run_file = where.stdout.split()
    assert Path(config_dir).is_relative_to(target) and Path(run_file).is_relative_to(target)
    assert (Path(config_dir) / "labelmaps" / "kinetics400.txt").read_text().splitlines()[0] == "abseiling"
    bad = subprocess.run([str(command), "train", "no_such.key=1"], cwd=work, env=env, capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == ["error: config key 'no_such.key' does not exist"]
