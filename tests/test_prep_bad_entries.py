"""`prep kinetics` reports every annotated entry that is not a readable regular video file, with its reason,
and never opens a fifo (which would block)."""
import os
import shutil

import pytest

from data_prep.kinetics import Options, choose, prepare, read_annotations


@pytest.mark.timeout(60)
def test_directories_broken_links_fifos_and_unreadable_files_are_reported(tmp_path, clips_dir):
    videos = tmp_path / "videos"
    videos.mkdir()
    shutil.copy(clips_dir / "tai_chi_k400.mp4", videos / "good.mp4")
    (videos / "folder.mp4").mkdir()
    (videos / "broken.mp4").symlink_to(tmp_path / "gone.mp4")
    os.mkfifo(videos / "pipe.mp4")
    locked = videos / "locked.mp4"
    shutil.copy(clips_dir / "tai_chi_k400.mp4", locked)
    locked.chmod(0)
    names = ["good.mp4", "folder.mp4", "broken.mp4", "pipe.mp4", "locked.mp4"]
    (tmp_path / "list.txt").write_text("".join(f"{name} tai_chi\n" for name in names))
    entries = read_annotations(tmp_path / "list.txt", videos, "train")
    labels, chosen = choose(entries, classes=0, class_list=None, per_class=0)
    report = prepare(chosen, labels, tmp_path / "out", Options(64, 8, 30), workers=1, progress=False)
    reasons = {os.path.basename(item["source"]): item["reason"] for item in report["skipped"]}
    written = {os.path.basename(path) for path in report["written"]}
    assert written == ({"good.mp4", "locked.mp4"} if os.geteuid() == 0 else {"good.mp4"}) and report["missing"] == []
    assert reasons["folder.mp4"] == "a directory, not a regular video file"
    assert reasons["broken.mp4"] == f"a broken symbolic link (to {tmp_path / 'gone.mp4'})"
    assert reasons["pipe.mp4"] == "a named pipe (fifo), not a regular video file"
    if os.geteuid() == 0:  # root reads any file: the permission check cannot be seen
        assert "locked.mp4" not in reasons
    else:
        assert reasons["locked.mp4"] == "cannot be read (Permission denied)"
