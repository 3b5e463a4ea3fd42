"""`run.py check` on a real dataset folder: good, truncated, too-short and broken videos sorted out in
parallel, and a clean split file that training then reads."""
import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT
from tests.video_helpers import faststart_copy, write_barcode_video


@pytest.mark.slow
def test_check_sorts_out_the_bad_videos_and_writes_a_clean_split(tmp_path, clips_dir):
    root = tmp_path / "data"
    root.mkdir()
    (root / "labels.txt").write_text("a\n")
    for name in ("good0.mp4", "good1.mp4"):
        write_barcode_video(root / name, 40)
    whole = faststart_copy(clips_dir / "arm_wrestling_k400.mp4", tmp_path / "whole.mp4").read_bytes()
    (root / "truncated.mp4").write_bytes(whole[: len(whole) // 2])
    (root / "short.mp4").write_bytes(whole[: len(whole) // 20])
    (root / "text.mp4").write_text("an error page saved instead of a video\n")
    names = ["good0.mp4", "truncated.mp4", "short.mp4", "text.mp4", "good1.mp4", "absent.mp4"]
    (root / "train.csv").write_text("path,label\n" + "".join(f"{name},a\n" for name in names))
    proc = subprocess.run([sys.executable, "run.py", "check", "--root", str(root), "--workers", "2", "--out",
                           str(tmp_path / "report.json"), "--write-clean", "data.backend=decord"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((tmp_path / "report.json").read_text())
    by_status = {row["path"].rsplit("/", 1)[1]: row["status"] for row in report["rows"]}
    assert by_status == {"good0.mp4": "ok", "good1.mp4": "ok", "truncated.mp4": "truncated", "short.mp4": "too_short",
                         "text.mp4": "unreadable", "absent.mp4": "unreadable"}
    assert report["truncated"][0]["header_frames"] == 280 and 120 <= report["truncated"][0]["frames"] < 140
    assert "checked 6 videos" in proc.stdout and "2 ok, 2 unreadable, 1 too short, 1 truncated" in proc.stdout
    clean = (root / "train_clean.csv").read_text().splitlines()
    assert clean == ["path,label", "good0.mp4,a", "truncated.mp4,a", "good1.mp4,a"]
