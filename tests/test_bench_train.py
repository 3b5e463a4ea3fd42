"""`bench train`: the JSON keys of docs/interfaces.md on tiny CPU runs, synthetic and decoded, and its errors."""
import json

import pytest

import run
from errors import UserError

KEYS = {"clips_per_s", "data_wait", "peak_bytes", "device", "attention"}
TINY = ["--frames", "8", "--size", "32", "--batch", "2", "--steps", "2", "--warmup", "1", "trainer.threads=1"]


def _bench(tmp_path, *extra):
    out = tmp_path / "train.json"
    assert run.main(["bench", "train", *TINY, "--json", str(out), *extra]) == 0
    return json.loads(out.read_text())


def test_synthetic_run_reports_every_key_and_the_kernel_of_each_block(tmp_path):
    report = _bench(tmp_path, "--config", "configs/model/i3d_tiny_nl.yaml")
    assert KEYS <= set(report)
    assert report["device"] == "cpu" and report["peak_kind"] == "rss_growth" and report["peak_bytes"] >= 0
    assert report["clips_per_s"] > 0 and report["data_wait"] is None  # no loader to wait for
    assert (report["batch"], report["frames"], report["size"], report["steps"]) == (2, 8, 32, 2)
    assert report["losses_finite"]
    assert report["attention"] == [{"block": "res3.1.nonlocal", "kernel": "flash"},
                                   {"block": "res4.1.nonlocal", "kernel": "flash"}]


def test_other_paths_are_named(tmp_path):
    report = _bench(tmp_path, "--config", "configs/model/i3d_tiny_nl.yaml", "model.attention.0.mode=concatenation",
                    "model.attention.0.stages=[4]")
    assert report["attention"] == [{"block": "res4.1.nonlocal", "kernel": "prefix-sum"}]


@pytest.mark.slow
def test_decoded_clips_report_the_share_spent_waiting(tmp_path, clips_dir):
    report = _bench(tmp_path, "--config", "configs/model/i3d_tiny.yaml", "--data", str(clips_dir),
                    "data.num_workers=1")
    assert KEYS <= set(report) and report["attention"] == []
    assert 0 <= report["data_wait"] < 1 and report["workers"] == 1 and report["data"] == str(clips_dir)


@pytest.mark.parametrize("args, culprit", [
    (["--data", "/no/such/folder"], "no such folder"),
    (["--steps", "0"], "--steps=0"),
    (["--batch", "0"], "--batch=0"),
])
def test_mistakes_are_one_line_errors(tmp_path, args, culprit):
    with pytest.raises(UserError, match=culprit):
        run.main(["bench", "train", "--config", "configs/model/i3d_tiny.yaml", "--steps", "1", *args])


def test_a_config_is_required():
    with pytest.raises(UserError, match="needs --config"):
        run.main(["bench", "train"])
