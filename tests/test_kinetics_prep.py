"""`prep kinetics` on copies of real clips under Kinetics names, with a broken file and a missing id."""
import json
import shutil
import subprocess
import sys

import av
import pytest

import run

from data_prep.kinetics import Options, choose, prepare, read_annotations
from errors import UserError
from tests.conftest import ROOT
from video.config import DataConfig
from video.dataset import VideoDataset

ANNOTATIONS = """label,youtube_id,time_start,time_end,split
tai chi,aaaaaaaaaaa,0,10,train
tai chi,bbbbbbbbbbb,2,4,train
golf,ccccccccccc,0,10,validate
golf,ddddddddddd,0,10,train
golf,eeeeeeeeeee,0,10,train
zumba,fffffffffff,0,10,train
"""


@pytest.fixture
def downloads(tmp_path, clips_dir):
    """Real clips named as downloaders name them: cut (id_start_end) and whole (id) videos."""
    videos = tmp_path / "downloads"
    (videos / "nested").mkdir(parents=True)
    shutil.copy(clips_dir / "tai_chi_k400.mp4", videos / "aaaaaaaaaaa_000000_000010.mp4")
    shutil.copy(clips_dir / "kth_person01_boxing_d2_uncomp.mp4", videos / "nested" / "bbbbbbbbbbb.mp4")
    shutil.copy(clips_dir / "hmdb51_golf.avi", videos / "ccccccccccc_000000_000010.avi")
    (videos / "ddddddddddd_000000_000010.mp4").write_text("an error page saved instead of a video")
    (tmp_path / "train.csv").write_text(ANNOTATIONS)
    return tmp_path


def _prep(folder, *extra):
    command = [sys.executable, "run.py", "prep", "kinetics", "--annotations", str(folder / "train.csv"),
               "--videos", str(folder / "downloads"), "--out", str(folder / "out"), "--short-side", "48", *extra]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_builds_the_dataset_and_reports_every_loss(downloads):
    proc = _prep(downloads, "--classes", "2", "--workers", "2")
    assert proc.returncode == 0, proc.stderr
    out = downloads / "out"
    report = json.loads((out / "prep_report.json").read_text())
    assert sorted(report) == ["missing", "skipped", "written"]
    assert report["written"] == ["videos/train/tai_chi/aaaaaaaaaaa.mp4", "videos/train/tai_chi/bbbbbbbbbbb.mp4",
                                 "videos/val/golf/ccccccccccc.mp4"]
    assert [entry["source"] for entry in report["skipped"]] == [str(downloads / "downloads" / "ddddddddddd_000000_000010.mp4")]
    assert "not a readable video" in report["skipped"][0]["reason"]
    assert report["missing"] == ["eeeeeeeeeee"]  # zumba is not among the 2 chosen classes
    assert (out / "labels.txt").read_text().splitlines() == ["golf", "tai chi"]
    expected_frames = {"aaaaaaaaaaa": 300, "bbbbbbbbbbb": 50, "ccccccccccc": 89}  # bbb: 2 s to 4 s at 25 fps
    for relative in report["written"]:
        with av.open(str(out / relative)) as container:
            stream = container.streams.video[0]
            keyframes = [i for i, packet in enumerate(container.demux(stream)) if packet.is_keyframe]
            assert min(stream.width, stream.height) == 48 and stream.codec_context.name == "h264"
            assert stream.frames == expected_frames[relative.split("/")[-1][:11]]
            assert max(b - a for a, b in zip(keyframes, keyframes[1:] + [stream.frames])) <= 16
    train = VideoDataset(out, "train", DataConfig(), train=False)  # the folder is a dataset
    assert [label for _, label in train.samples] == [1, 1] and train[0]["valid"]


def test_a_second_run_resumes_without_redoing_finished_videos(downloads):
    (downloads / "classes.txt").write_text("tai chi\ngolf\n")
    entries = read_annotations(downloads / "train.csv", downloads / "downloads")
    labels, chosen = choose(entries, classes=0, class_list=downloads / "classes.txt", per_class=0)
    out, options = downloads / "out", Options(32, 8, 30)
    first = prepare(chosen, labels, out, options, workers=1, progress=False)
    finished = {p: p.stat().st_mtime_ns for p in (out / "videos").rglob("*.mp4")}
    assert len(finished) == len(first["written"]) == 3 and labels == ["tai chi", "golf"]
    again = prepare(chosen, labels, out, options, workers=1, progress=False)
    assert {p: p.stat().st_mtime_ns for p in (out / "videos").rglob("*.mp4")} == finished
    assert again["written"] == first["written"] and again["skipped"] == first["skipped"]


def test_mmaction_list_with_a_split(downloads):
    listing = downloads / "list.txt"
    listing.write_text("aaaaaaaaaaa_000000_000010.mp4 tai_chi\nnested/bbbbbbbbbbb.mp4 tai_chi\nnope.mp4 golf\n")
    entries = read_annotations(listing, downloads / "downloads", "val")
    labels, chosen = choose(entries, classes=0, class_list=None, per_class=1)
    report = prepare(chosen, labels, downloads / "out", Options(32, 8, 30), workers=1, progress=False)
    assert labels == ["golf", "tai_chi"]
    assert report["written"] == ["videos/val/tai_chi/aaaaaaaaaaa_000000_000010.mp4"]  # capped at 1 per class
    assert report["missing"] == ["nope.mp4"] and report["skipped"] == []
    assert (downloads / "out" / "val.csv").read_text().splitlines()[1:] == [
        "videos/val/tai_chi/aaaaaaaaaaa_000000_000010.mp4,tai_chi"]


def test_nothing_written_is_a_user_error(downloads):
    (downloads / "train.csv").write_text("label,youtube_id,time_start,time_end,split\ngolf,zzzzzzzzzzz,0,10,train\n")
    argv = ["prep", "kinetics", "--annotations", str(downloads / "train.csv"), "--videos",
            str(downloads / "downloads"), "--out", str(downloads / "out")]
    with pytest.raises(UserError, match="no video was written"):
        run.main(argv)
    assert json.loads((downloads / "out" / "prep_report.json").read_text())["missing"] == ["zzzzzzzzzzz"]


@pytest.mark.parametrize("text, culprit", [
    ("label,youtube_id,time_start,time_end,split\ngolf,x,zero,10,train\n", "train.csv:2"),
    ("label,youtube_id,time_start,time_end,split\ngolf,x,0,10,holdout\n", "holdout"),
])
def test_bad_annotations_name_the_line(tmp_path, text, culprit):
    (tmp_path / "train.csv").write_text(text)
    with pytest.raises(UserError, match=culprit):
        read_annotations(tmp_path / "train.csv", tmp_path, "train")


def test_unknown_class_in_the_class_list(downloads):
    entries = read_annotations(downloads / "train.csv", downloads / "downloads")
    (downloads / "classes.txt").write_text("curling\n")
    with pytest.raises(UserError, match="curling"):
        choose(entries, classes=0, class_list=downloads / "classes.txt", per_class=0)
