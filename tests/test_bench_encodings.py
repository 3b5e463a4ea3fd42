"""`bench encodings` reads the same videos from several folders and reports clips/s and bytes per folder."""
import json

import pytest
import torch

import run
from errors import UserError
from tests.video_helpers import write_barcode_video


def test_bench_encodings_one_row_per_folder(tmp_path):
    folders = [tmp_path / "gop8", tmp_path / "gop32"]
    for folder, interval in zip(folders, (8, 32)):
        folder.mkdir()
        for number in range(2):
            write_barcode_video(folder / f"clip{number}.mp4", 70, keyframe_interval=interval)
    (folders[1] / "extra.mp4").write_bytes((folders[1] / "clip0.mp4").read_bytes())  # only in one folder: left out
    out = tmp_path / "enc.json"
    threads = torch.get_num_threads()
    try:
        assert run.main(["bench", "encodings", "--videos", *map(str, folders), "--rounds", "1", "--json", str(out)]) == 0
    finally:
        torch.set_num_threads(threads)
    rows = json.loads(out.read_text())["results"]
    assert [row["folder"] for row in rows] == [str(folder) for folder in folders]
    for row, folder in zip(rows, folders):
        assert row["videos"] == 2
        assert row["bytes"] == sum((folder / f"clip{n}.mp4").stat().st_size for n in range(2))
        assert all(row[f"{b}/{s}"] > 0 for b in ("decord", "pyav") for s in ("dense32x2", "tsn8"))


def test_folders_without_common_videos_are_refused(tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        write_barcode_video(tmp_path / name / f"{name}.mp4", 20)
    with pytest.raises(UserError, match="no video of the same name"):
        run.main(["bench", "encodings", "--videos", str(tmp_path / "a"), str(tmp_path / "b")])
