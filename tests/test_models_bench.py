"""`bench model` JSON keys (docs/interfaces.md) on a tiny run, and the FLOP counter behind `run.py sizes`."""
import argparse
import json

import torch
import torchvision

from commands import bench_model
from configs.compose import load_config
from models.build import build_model
from models.config import ModelConfig
from analysis.profiling.sizes import forward_macs


def test_bench_model_writes_the_documented_keys(tmp_path):
    parser = argparse.ArgumentParser()
    parser.add_argument("--config")
    parser.add_argument("overrides", nargs="*")
    bench_model.add_arguments(parser)
    out = tmp_path / "m.json"
    args = parser.parse_args(["--json", str(out), "--models", "i3d_tiny_nl", "--tiny-input", "2x8x32",
                              "--frames", "8", "--size", "64", "--repeats", "1", "--mode", "concatenation"])
    torch.set_num_threads(1)
    assert bench_model.run_command(args, load_config(None)) == 0
    result = json.loads(out.read_text())
    assert [set(r) for r in result["models"]] == [{"config", "clips_per_s", "activation_bytes"}]
    assert [r["placement"].split()[0] for r in result["nonlocal_memory"]] == ["res2", "res3"]
    for row in result["nonlocal_memory"]:
        assert {"placement", "frames", "reference_bytes", "fused_bytes", "ratio", "max_abs_diff"} <= set(row)
        assert row["frames"] == 8 and row["ratio"] == row["fused_bytes"] / row["reference_bytes"]
        assert row["max_abs_diff"] < 1e-4


def test_tsn_r50_costs_eight_torchvision_resnet50_frames():
    """Our per-segment 2D ResNet-50 does exactly torchvision's multiply-adds for each of 8 segments."""
    ours = forward_macs(build_model(ModelConfig(arch="tsn", depth=50), 1000), (1, 3, 8, 224, 224))
    theirs = forward_macs(torchvision.models.resnet50(), (1, 3, 224, 224))
    assert ours == 8 * theirs
