"""Building from config: every shipped config, attention placement by name, and placement errors."""
import subprocess
import sys

import pytest
import torch

from configs.compose import load_config
from errors import UserError
from models.build import build_model
from models.config import ModelConfig
from tests.conftest import ROOT

CONFIGS = sorted((ROOT / "configs" / "model").glob("*.yaml"))
TINY = [path for path in CONFIGS if "tiny" in path.stem]


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_every_model_config_builds(path):
    model = build_model(load_config(str(path)).model, num_classes=7)
    assert model.head.fc.out_features == 7


@pytest.mark.parametrize("path", TINY, ids=lambda p: p.stem)
def test_tiny_configs_train_a_step(path):
    model = build_model(load_config(str(path)).model, num_classes=7)
    clip, label = torch.randn(2, 3, 8, 56, 56), torch.tensor([1, 5])
    loss = torch.nn.functional.cross_entropy(model(clip), label)
    weights = model.aux_loss_weights()
    loss = loss + sum(weights[k] * v for k, v in model.aux_losses().items())
    loss.backward()
    assert torch.isfinite(loss) and model.head.fc.weight.grad is not None


def _model(attention, depth=50, arch="i3d"):
    return build_model(ModelConfig(arch=arch, depth=depth, width=0.0625, attention=attention), 3)


def test_placement_names_follow_the_config():
    model = _model([{"type": "nonlocal", "stages": [3, 4], "every": 2}])
    assert sorted(model.attention_blocks()) == [
        "res3.1.nonlocal", "res3.3.nonlocal", "res4.1.nonlocal", "res4.3.nonlocal", "res4.5.nonlocal"]
    model = _model([{"type": "nonlocal", "stages": [3, 4], "blocks": [[0], [2, 5]], "mode": "dot_product"}])
    blocks = model.attention_blocks()
    assert sorted(blocks) == ["res3.0.nonlocal", "res4.2.nonlocal", "res4.5.nonlocal"]
    assert blocks["res4.5.nonlocal"].mode == "dot_product"
    assert blocks["res4.5.nonlocal"] is model.backbone.get_submodule("res4.5.attention.nonlocal")
    assert len(_model([{"type": "nonlocal", "stages": 5}]).attention_blocks()) == 3


def test_placed_blocks_see_their_stage_output():
    model = _model([{"type": "nonlocal", "stages": [2, 5], "blocks": [0]}], depth=18, arch="c2d")
    seen = {}
    for name, block in model.attention_blocks().items():
        block.register_forward_hook(lambda m, i, o, name=name: seen.__setitem__(name, o.shape))
    model(torch.randn(1, 3, 8, 64, 64))
    assert seen == {"res2.0.nonlocal": (1, 4, 2, 16, 16), "res5.0.nonlocal": (1, 32, 1, 2, 2)}


@pytest.mark.parametrize("attention, culprit", [
    ([{"type": "nonlocal", "stages": [6]}], r"model.attention\[0\]: stage 6 does not exist"),
    ([{"type": "nonlocal", "stages": [4], "blocks": [9]}], r"block 9 of res4 does not exist \(res4 has 6 blocks"),
    ([{"type": "nonlocal", "stages": [3, 4], "blocks": [1, 3, 5]}], "block 5 of res3 does not exist"),
    ([{"type": "wavelet", "stages": [4]}], "unknown attention type 'wavelet'"),
    ([{"type": "nonlocal", "stages": [4], "heads": 8}], r"\(nonlocal\): unknown option 'heads'"),
    ([{"type": "nonlocal", "stages": [4], "mode": "cosine"}], r"model.attention\[0\]: nonlocal mode='cosine'"),
    ([{"type": "nonlocal", "stages": [4], "every": 2, "blocks": [1]}], "either 'blocks' or 'every'"),
    ([{"type": "nonlocal", "stages": [4], "every": 0}], "'every' must be a positive integer"),
    ([{"type": "nonlocal", "stages": [4]}, {"type": "nonlocal", "stages": [4], "blocks": [2]}],
     r"model.attention\[1\]: res4.2.nonlocal is placed twice"),
    ([{"stages": [4]}], "needs both 'type' and 'stages'"),
])
def test_impossible_placements_are_user_errors(attention, culprit):
    with pytest.raises(UserError, match=culprit):
        _model(attention)


@pytest.mark.slow
def test_cli_reports_a_bad_placement_in_one_line():
    proc = subprocess.run(
        [sys.executable, "run.py", "bench", "model", "--config", "configs/model/i3d_tiny.yaml",
         "model.attention=[{type: nonlocal, stages: [4], blocks: [9]}]"],
        cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: model.attention[0]: block 9 of res4")
    assert proc.stderr.strip().count("\n") == 0
