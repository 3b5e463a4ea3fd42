"""`convert --source pytorchvideo`: pytorchvideo's own hub ResNets (I3D, Slow, C2D), random weights and BN
statistics, saved as its model-zoo `.pyth` files are, give the same logits after conversion (8x224x224,
the input their head pool is sized for), converted with or without the matching configs/model file: with it,
the written config and weights are those written without it, so the network and its logits are the same."""
import argparse

import pytest
import torch

from bench.random_weights import randomize
from commands.convert import convert
from engine.checkpoint import load_trained
from engine.inputs import model_input

hub = pytest.importorskip("pytorchvideo.models.hub.resnet", reason="pytorchvideo is a test-only dependency")
MODELS = {"i3d_r50": "I3D_8x8_R50.pyth", "slow_r50": "SLOW_8x8_R50.pyth", "c2d_r50": "C2D_8x8_R50.pyth"}
MATCHING = {"i3d_r50": "i3d_r50", "slow_r50": "i3d_r50", "c2d_r50": "c2d_r50"}


def convert_args(path, out, config=None, verify=False):
    return argparse.Namespace(source="pytorchvideo", checkpoint=path, out=out, labels=None, arch=None,
                              nonlocal_mode=None, trust_file=False, config=config, overrides=[], verify=verify)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(MODELS))
def test_converted_logits_equal_pytorchvideos(tmp_path, name):
    theirs = getattr(hub, name)(pretrained=False)
    randomize(theirs, seed=7)
    path = tmp_path / MODELS[name]
    torch.save({"model_state": theirs.state_dict()}, path)
    convert(convert_args(path, tmp_path / "ours.pt"))
    convert(convert_args(path, tmp_path / "configured.pt", config=f"configs/model/{MATCHING[name]}.yaml"))
    plain, configured = (torch.load(tmp_path / f"{n}.pt", weights_only=True) for n in ("ours", "configured"))
    assert plain["config"] == configured["config"]
    assert all(torch.equal(plain["model"][k], configured["model"][k]) for k in plain["model"])
    ours, cfg, _ = load_trained(tmp_path / "ours.pt")
    clip = torch.randint(0, 256, (1, 3, 8, 224, 224), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    inputs = model_input(clip, torch.device("cpu"), cfg.data, channels_last=False)
    reference = (clip.float() / 255 - 0.45) / 0.225  # pytorchvideo's Kinetics normalisation
    assert (inputs - reference).abs().max() < 1e-5
    with torch.no_grad():
        expected, got = theirs.eval()(reference), ours(inputs)
    error = ((got - expected).abs().max() / expected.abs().max()).item()
    print(f"{name}: max |diff| / max |logit| = {error:.2e}")
    assert expected.abs().max() > 1e-3 and error < 1e-4
