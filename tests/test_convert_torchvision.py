"""`convert --source torchvision`: a torchvision ResNet becomes our TSN whose score for a clip is the
image network's score averaged over its frames (random weights and BN statistics, so nothing is trivial)."""
import argparse

import pytest
import torch
import torchvision

from bench.random_weights import randomize
from commands.convert import convert
from engine.checkpoint import load_trained
from errors import UserError


def test_tsn_from_a_torchvision_resnet_scores_as_the_image_network(tmp_path):
    image_net = torchvision.models.resnet18(weights=None)
    randomize(image_net, seed=3)
    torch.save(image_net.state_dict(), tmp_path / "resnet18.pth")
    args = argparse.Namespace(source="torchvision", checkpoint=tmp_path / "resnet18.pth", out=tmp_path / "tsn.pt",
                              labels=None, arch=None, nonlocal_mode=None, trust_file=False, config=None, overrides=[], verify=False)
    result = convert(args)
    assert "model.depth: 18  <- the weights (blocks per stage)" in result["report"]
    ours, cfg, labels = load_trained(tmp_path / "tsn.pt")
    assert cfg.model.arch == "tsn" and len(labels) == 1000
    frames = torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = image_net.eval()(frames).mean(0, keepdim=True)
        got = ours(frames.transpose(0, 1).unsqueeze(0))  # (1, 3, T, H, W)
    assert ((got - expected).abs().max() / expected.abs().max()).item() < 1e-4
    with pytest.raises(UserError, match="not a torchvision ResNet"):
        torch.save({"weight": torch.zeros(1)}, tmp_path / "other.pth")
        convert(argparse.Namespace(**{**vars(args), "checkpoint": tmp_path / "other.pth"}))
