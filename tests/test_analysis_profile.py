"""The placement profiler: sweep expansion, budget logic, rows against a hand computation, the CLI."""
import json
import subprocess
import sys

import pytest
from omegaconf import OmegaConf
from PIL import Image

from analysis.profiling.budget import largest_fitting_batch, parse_bytes
from analysis.profiling.profile import mark_budget, run_profile
from analysis.profiling.sweep import expand_sweep
from configs.compose import load_config
from errors import UserError
from tests.conftest import ROOT

CONTRACT_KEYS = {"placement", "frames", "size", "batch", "implementation", "params", "gflops", "activation_bytes",
               "predicted_activation_bytes", "nonlocal_affinity_bytes", "peak_bytes", "fits_budget"}
RES4_NL = {"name": "res4.1", "attention": [{"type": "nonlocal", "stages": [4], "blocks": [1]}]}


@pytest.mark.parametrize("text, expected", [("16GiB", 16 * 2**30), ("512MB", 512 * 10**6), ("1.5KiB", 1536),
                                            ("4096", 4096), ("2 gib", 2 * 2**30)])
def test_parse_bytes(text, expected):
    assert parse_bytes(text) == expected


@pytest.mark.parametrize("text", ["16 parsecs", "GiB", "-1GB", ""])
def test_bad_budget_names_the_option(text):
    with pytest.raises(UserError, match="--budget"):
        parse_bytes(text, "--budget")


def test_largest_fitting_batch_is_linear_in_the_batch():
    # 50 bytes of state and 100 bytes per clip, measured at batch 2
    assert largest_fitting_batch(250, 2, 50, 1000) == 9
    assert largest_fitting_batch(250, 2, 50, 150) == 1
    assert largest_fitting_batch(250, 2, 50, 149) == 0


def test_budget_marks_rows_over_it():
    # 4 clips of 1000 bytes beside 1000 bytes of weights, gradients and optimizer state
    row = {"batch": 4, "footprint_bytes": 5000, "state_bytes": 1000}
    assert mark_budget(dict(row), 5000) == {**row, "fits_budget": True, "max_fitting_batch": 4}
    over = mark_budget(dict(row), 3100)
    assert (over["fits_budget"], over["max_fitting_batch"]) == (False, 2)
    assert mark_budget(dict(row), None)["fits_budget"] is None


def _profile_cfg(**profile):
    return load_config(str(ROOT / "configs" / "model" / "i3d_tiny.yaml"),
                       [f"profile.{k}={json.dumps(v)}" for k, v in profile.items()])


def test_sweep_writes_options_into_nonlocal_entries_only():
    placements = [{"name": "none", "attention": []}, RES4_NL,
                  {"name": "mixed", "attention": [{"type": "nonlocal", "stages": [3], "blocks": [0],
                                                   "subsample": False}, {"type": "se", "stages": [2]}]}]
    cfg = _profile_cfg(placements=placements, frames=[4, 8], subsample=[True, False],
                       implementations=["reference", "fused"])
    cases = expand_sweep(cfg.profile)
    assert len(cases) == 2 * (1 + 4 + 4)  # frames x (no block once, else subsample x implementation)
    mixed = [c for c in cases if c.placement == "mixed"]
    assert {c.attention[0]["subsample"] for c in mixed} == {False}  # an entry's own option wins
    assert all("implementation" not in c.attention[1] for c in mixed)
    with pytest.raises(UserError, match="profile.implementations"):
        expand_sweep(_profile_cfg(implementations=["fast"]).profile)


def _nonlocal_hand_count(channels, inner, queries, keys):
    """Parameters and forward multiply-adds of an embedded-Gaussian non-local block."""
    params = 3 * (channels * inner + inner) + inner * channels + 2 * channels  # theta/phi/g, W, BN
    macs = queries * channels * inner * 4 + 2 * queries * keys * inner  # 4 1x1x1 convs; q k^T and (.) v
    return params, macs


def test_profile_rows_against_a_hand_computation(tmp_path):
    cfg = _profile_cfg(placements=[{"name": "none", "attention": []}, RES4_NL], frames=[8], sizes=[64], batch=[2],
                       subsample=[True], implementations=["reference", "fused"], device="cpu")
    result = run_profile(cfg.model, cfg.profile, tmp_path / "out", json_path=tmp_path / "rows.json", budget="13MiB")
    rows = {(r["placement"], r["implementation"]): r for r in result["rows"]}
    assert len(rows) == 3 and all(CONTRACT_KEYS <= set(r) for r in rows.values())
    base, ref, fused = rows[("none", "-")], rows[("res4.1", "reference")], rows[("res4.1", "fused")]
    # tiny I3D at 8x64x64: res4 is 64 channels on a 2x4x4 grid; subsampled keys 2x2x2
    queries, keys, batch = 2 * 4 * 4, 2 * 2 * 2, 2
    params, macs = _nonlocal_hand_count(64, 32, queries, keys)
    assert ref["params"] - base["params"] == params == fused["params"] - base["params"]
    assert ref["gflops"] - base["gflops"] == pytest.approx(macs / 1e9, rel=1e-6)
    assert fused["gflops"] == pytest.approx(ref["gflops"], rel=1e-9)
    assert ref["nonlocal_affinity_bytes"] == batch * queries * keys * 4 and fused["nonlocal_affinity_bytes"] == 0
    for row in rows.values():
        assert abs(row["predicted_activation_bytes"] / row["activation_bytes"] - 1) < 0.10
        assert row["peak_bytes"] is None and row["fits_budget"] == (row["footprint_bytes"] <= 13 * 2**20)
        assert row["fits_budget"] == (row["max_fitting_batch"] >= batch)
    assert json.loads((tmp_path / "rows.json").read_text()) == json.loads((tmp_path / "out" / "profile.json").read_text())
    assert "| res4.1 |" in (tmp_path / "out" / "profile.md").read_text()
    with Image.open(tmp_path / "out" / "profile.png") as chart:
        chart.verify()


@pytest.mark.slow
def test_cli_profile_marks_rows_over_the_budget(tmp_path):
    sweep = tmp_path / "sweep.yaml"
    OmegaConf.save({"defaults": ["profile/default.yaml"],
                    "profile": {"placements": [RES4_NL], "frames": [4], "sizes": [32], "subsample": [True],
                                "implementations": ["fused"], "device": "cpu"}}, sweep)
    proc = subprocess.run([sys.executable, "run.py", "profile", "--config", str(sweep), "--out", str(tmp_path / "p"),
                           "--budget", "1KiB"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    (row,) = json.loads((tmp_path / "p" / "profile.json").read_text())["rows"]
    assert row["fits_budget"] is False and row["max_fitting_batch"] == 0
    assert "worst prediction error" in proc.stdout
