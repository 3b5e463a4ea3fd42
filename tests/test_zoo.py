"""`zoo`: the YAML model configs as timm-style constructors."""
import pytest
import torch

from zoo import create_model, list_models, load_model
from configs.compose import load_config
from engine.checkpoint import FORMAT, config_to_container, save_checkpoint
from errors import UserError


def test_create_model_by_name_with_overrides():
    assert {"i3d_r50_nl5", "tsn_r50", "c2d_tiny_nl"} <= set(list_models())
    model = create_model("i3d_tiny_nl", num_classes=7, dropout=0.3, **{"temporal.conv1_stride": 1,
                                                                     "attention": [{"type": "se", "stages": [5]}]})
    assert model.head.fc.out_features == 7 and model.head.dropout.p == 0.3 and model.backbone.conv1.stride[0] == 1
    assert list(model.attention_blocks()) == ["res5.0.se", "res5.1.se"]
    assert model(torch.zeros(1, 3, 8, 32, 32)).shape == (1, 7)
    with pytest.raises(UserError, match="unknown model config 'i3d_r51'; known: c2d_r50"):
        create_model("i3d_r51")
    with pytest.raises(UserError, match="model.depth"):
        create_model("i3d_tiny", depth=51)


def test_load_model_rebuilds_the_checkpoints_own_architecture(tmp_path):
    cfg = load_config("configs/model/i3d_tiny.yaml", ["model.attention=[{type: nonlocal, stages: [4], mode: dot_product}]"])
    model = create_model("i3d_tiny", num_classes=2, attention=[{"type": "nonlocal", "stages": [4], "mode": "dot_product"}])
    save_checkpoint({"format": FORMAT, "model": model.state_dict(), "config": config_to_container(cfg),
                     "labels": ["a", "b"], "step": 0}, tmp_path / "m.pt")
    loaded, labels = load_model(str(tmp_path / "m.pt"))
    assert labels == ["a", "b"] and loaded.attention_blocks()["res4.0.nonlocal"].mode == "dot_product"
    assert not loaded.training
