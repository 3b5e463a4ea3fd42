"""`bench decode` and `bench loader` run end to end on small real videos and write the documented keys."""
import json

import pytest
import torch

import run
from bench.decode import bare_decord, bare_pyav
from errors import UserError
from tests.video_helpers import read_barcodes, write_barcode_video


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bench")
    for number, frames in enumerate((70, 90)):
        write_barcode_video(folder / f"clip{number}.mp4", frames, keyframe_interval=16)
    (folder / "notes.txt").write_text("not a video: ignored")
    return folder


@pytest.mark.parametrize("bare", [bare_pyav, bare_decord])
def test_bare_decoders_return_the_asked_frames(videos, bare):
    indices = [3, 40, 41, 69]
    assert read_barcodes(bare(str(videos / "clip0.mp4"), indices)) == indices


@pytest.mark.slow
def test_bench_decode_writes_the_documented_json(videos, tmp_path, capsys):
    torch.set_num_threads(1)
    out = tmp_path / "bench.json"
    assert run.main(["bench", "decode", "--videos", str(videos), "--json", str(out), "--repeats", "1",
                     "data.transforms.train_scale=[32,40]", "data.transforms.crop_size=32",
                     "data.transforms.test_scale=32"]) == 0
    result = json.loads(out.read_text())
    assert sorted(result) == ["loader", "open_ms", "results"]
    assert sorted(result["open_ms"]) == ["decord", "pyav"] and min(result["open_ms"].values()) > 0
    assert {(row["backend"], row["sampling"]) for row in result["results"]} == {
        (b, s) for b in ("pyav", "decord") for s in ("tsn8", "dense32x2")}
    for row in result["results"]:
        assert sorted(row) == sorted(["backend", "sampling", "clips_per_s", "frames_per_s",
                                      "reference_frames_per_s", "ratio"])
        frames = 8 if row["sampling"] == "tsn8" else 32
        assert row["frames_per_s"] == pytest.approx(row["clips_per_s"] * frames, rel=0.01)
        assert row["ratio"] == pytest.approx(row["frames_per_s"] / row["reference_frames_per_s"], rel=0.02)
    assert [row["workers"] for row in result["loader"]] == [0, 1, 2]
    assert all(sorted(row) == ["clips_per_s", "workers"] and row["clips_per_s"] > 0 for row in result["loader"])
    assert "ratio" in capsys.readouterr().out


def test_bench_decode_names_a_missing_folder(tmp_path):
    with pytest.raises(UserError, match="nope"):
        run.main(["bench", "decode", "--videos", str(tmp_path / "nope")])


@pytest.mark.slow
def test_bench_loader_prints_one_line_per_worker_count(tmp_path, capsys):
    torch.set_num_threads(1)
    (tmp_path / "labels.txt").write_text("a\nb\n")
    rows = []
    for number in range(4):
        write_barcode_video(tmp_path / f"v{number}.mp4", 40)
        rows.append(f"v{number}.mp4,{'ab'[number % 2]}\n")
    (tmp_path / "train.csv").write_text("path,label\n" + "".join(rows))
    assert run.main(["bench", "loader", f"data.root={tmp_path}", "data.batch_size=2", "--workers", "0", "2",
                     "--threads", "1", "2", "--epochs", "1"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if "clips/s" in line]
    assert [line.split(":")[0].strip() for line in lines] == [
        f"workers {w}, decoder threads {t}" for w in (0, 2) for t in (1, 2)]
    assert all(float(line.split(":")[1].split()[0]) > 0 for line in lines)
