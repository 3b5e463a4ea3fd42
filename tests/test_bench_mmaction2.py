"""`bench mmaction2` runs both pipelines on small real videos; without mmaction2 it is one clear error."""
import importlib.util
import json

import pytest
import torch

import run
from errors import UserError
from tests.video_helpers import write_barcode_video


def test_bench_mmaction2_writes_one_row_per_cell(tmp_path, capsys):
    pytest.importorskip("mmaction", reason="mmaction2 is an optional test dependency")
    torch_threads = torch.get_num_threads()
    for number, frames in enumerate((70, 90)):
        write_barcode_video(tmp_path / f"clip{number}.mp4", frames, keyframe_interval=16)
    out = tmp_path / "bench.json"
    try:
        assert run.main(["bench", "mmaction2", "--videos", str(tmp_path), "--rounds", "1", "--json", str(out)]) == 0
    finally:
        torch.set_num_threads(torch_threads)
    rows = json.loads(out.read_text())["results"]
    assert {(row["backend"], row["sampling"]) for row in rows} == {
        (backend, sampling) for backend in ("decord", "pyav") for sampling in ("dense32x2", "tsn8")}
    for row in rows:
        assert row["videos"] == 2 and row["left_out"] == {}
        assert row["mmaction2_backend"] == ("decord" if row["sampling"] == "tsn8" else row["backend"])
        assert row["ratio"] == pytest.approx(row["ours_clips_per_s"] / row["mmaction2_clips_per_s"], rel=0.02)
        assert row["cpu_ratio"] == pytest.approx(row["ours_cpu_clips_per_s"] / row["mmaction2_cpu_clips_per_s"],
                                                 rel=0.02)
    assert "CPU ratio" in capsys.readouterr().out


def test_without_mmaction2_it_is_one_clear_error(tmp_path, monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *rest: None if name == "mmaction" else real_find_spec(name, *rest))
    with pytest.raises(UserError, match="mmaction2.*not installed"):
        run.main(["bench", "mmaction2", "--videos", str(tmp_path)])
