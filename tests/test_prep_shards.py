"""`prep kinetics --shard i/N` on real small videos, joined by `prep merge`: the same dataset as one run."""
import csv
import json

import pytest

import run
from data_prep.kinetics import Entry, parse_shard, take_shard
from errors import UserError
from tests.video_helpers import read_barcodes, write_barcode_video
from video.config import DataConfig
from video.dataset import VideoDataset
from video.decode import open_video


@pytest.fixture(scope="module")
def downloads(tmp_path_factory):
    """Eight barcoded videos of two classes in an mmaction `path label` list, one of them broken."""
    folder = tmp_path_factory.mktemp("downloads")
    lines = []
    for number in range(8):
        name = f"clip{number}.mp4"
        if number == 5:
            (folder / name).write_text("an error page, not a video")
        else:
            write_barcode_video(folder / name, 20 + number, keyframe_interval=8)
        lines.append(f"{name} {'ab'[number % 2]}")
    lines.append("absent.mp4 a")
    (folder / "list.txt").write_text("\n".join(lines) + "\n")
    return folder


def _prep(downloads, out, *extra):
    return run.main(["prep", "kinetics", "--annotations", str(downloads / "list.txt"), "--videos", str(downloads),
                     "--out", str(out), "--short-side", "32", "--workers", "1", *extra])


def _rows(folder):
    with open(folder / "train.csv", newline="") as file:
        return sorted(tuple(row) for row in list(csv.reader(file))[1:])


def test_shards_merged_equal_one_run(downloads, tmp_path):
    assert _prep(downloads, tmp_path / "whole") == 0
    shards = [tmp_path / f"shard{i}" for i in range(3)]
    for index, folder in enumerate(shards):
        _prep(downloads, folder, "--shard", f"{index}/3")
        assert json.loads((folder / "prep_report.json").read_text())["shard"] == {"index": index, "count": 3}
    assert run.main(["prep", "merge", "--inputs", *map(str, shards), "--out", str(tmp_path / "merged")]) == 0
    whole = json.loads((tmp_path / "whole" / "prep_report.json").read_text())
    merged = json.loads((tmp_path / "merged" / "prep_report.json").read_text())
    assert merged["written"] == sorted(whole["written"]) and len(merged["written"]) == 7
    assert merged["skipped"] == whole["skipped"] and merged["missing"] == whole["missing"] == ["absent.mp4"]
    assert _rows(tmp_path / "merged") == _rows(tmp_path / "whole")
    assert (tmp_path / "merged" / "labels.txt").read_text() == (tmp_path / "whole" / "labels.txt").read_text()
    dataset = VideoDataset(tmp_path / "merged", "train", DataConfig(), train=False)
    assert len(dataset) == 7
    for path, _ in dataset.samples:  # every merged video decodes to its own frames
        with open_video(path) as reader:
            assert read_barcodes(reader.get_frames([0, reader.num_frames - 1])) == [0, reader.num_frames - 1]


def test_merge_refuses_a_missing_or_repeated_shard(downloads, tmp_path):
    for index in (0, 1):
        _prep(downloads, tmp_path / f"s{index}", "--shard", f"{index}/3")
    with pytest.raises(UserError, match="missing \\['2/3'\\]"):
        run.main(["prep", "merge", "--inputs", str(tmp_path / "s0"), str(tmp_path / "s1"), "--out", str(tmp_path / "m")])
    with pytest.raises(UserError, match="given twice \\['0/3'\\]"):
        run.main(["prep", "merge", "--inputs", str(tmp_path / "s0"), str(tmp_path / "s0"), str(tmp_path / "s1"),
                  "--out", str(tmp_path / "m")])


def test_shards_are_disjoint_and_complete():
    entries = [Entry(f"id{number}", "a", "train", None, None) for number in range(200)]
    shards = [take_shard(entries, index, 4) for index in range(4)]
    assert sorted(entry.key for shard in shards for entry in shard) == sorted(entry.key for entry in entries)
    assert all(30 <= len(shard) <= 70 for shard in shards)  # a hash split, roughly even
    assert take_shard(entries[::-1], 1, 4) == shards[1][::-1]  # the same split in any order


@pytest.mark.parametrize("text", ["3/3", "1", "a/b", "-1/2"])
def test_bad_shard_is_one_clear_error(text):
    with pytest.raises(UserError, match="--shard"):
        parse_shard(text)
