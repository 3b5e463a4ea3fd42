"""`convert --source pytorchvideo`: pytorchvideo's own hub ResNets (I3D, Slow, C2D), random weights and BN
statistics, saved as its model-zoo `.pyth` files are, give the same logits after conversion (8x224x224,
the input their head pool is sized for)."""
import argparse

import pytest
import torch

from bench.random_weights import randomize
from commands.convert import convert
from engine.checkpoint import load_for_inference
from engine.inputs import model_input

hub = pytest.importorskip("pytorchvideo.models.hub.resnet", reason="pytorchvideo is a test-only dependency")
MODELS = {"i3d_r50": "I3D_8x8_R50.pyth", "slow_r50": "SLOW_8x8_R50.pyth", "c2d_r50": "C2D_8x8_R50.pyth"}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(MODELS))
def test_converted_logits_equal_pytorchvideos(tmp_path, name):
    theirs = getattr(hub, name)(pretrained=False)
    randomize(theirs, seed=7)
    path = tmp_path / MODELS[name]
    torch.save({"model_state": theirs.state_dict()}, path)
    convert(argparse.Namespace(source="pytorchvideo", checkpoint=path, out=tmp_path / "ours.pt", labels=None, arch=None,
                               nonlocal_mode=None, trust_file=False, config=None, overrides=[]))
    ours, cfg, _ = load_for_inference(tmp_path / "ours.pt")
    clip = torch.randint(0, 256, (1, 3, 8, 224, 224), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    inputs = model_input(clip, torch.device("cpu"), cfg.data, channels_last=False)
    reference = (clip.float() / 255 - 0.45) / 0.225  # pytorchvideo's Kinetics normalisation
    assert (inputs - reference).abs().max() < 1e-5
    with torch.no_grad():
        expected, got = theirs.eval()(reference), ours(inputs)
    error = ((got - expected).abs().max() / expected.abs().max()).item()
    print(f"{name}: max |diff| / max |logit| = {error:.2e}")
    assert expected.abs().max() > 1e-3 and error < 1e-4
