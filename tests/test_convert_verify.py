"""`convert --verify`: the source toolkit's own model, built from the published config a model-zoo name
names or from the config text in the checkpoint's meta, against the converted one on one random clip.
A conversion tampered with (two same-shaped tensors swapped, which every key and shape check lets
through) is refused and nothing is written; without the toolkit, one line says what to install."""
from __future__ import annotations

import re
import sys

import pytest
import torch

from commands.convert import convert
from errors import UserError
from models.converters.common import CONVERTERS
from bench.random_weights import randomize
from tests.test_convert_mmaction2 import convert_args, mmaction2_file

RATIO = re.compile(r"max \|diff\| / max \|logit\| = ([0-9.e+-]+)")


@pytest.fixture(scope="module")
def zoo_file(tmp_path_factory):
    """An mmaction2 NL dot-product I3D saved under its model-zoo name (no config in its meta)."""
    path, recognizer, config = mmaction2_file(tmp_path_factory.mktemp("zoo"), "nl_dot_product")
    return path, recognizer.state_dict(), config


@pytest.mark.slow
def test_verify_passes_against_the_published_config_and_the_stored_one(zoo_file, tmp_path):
    path, state, config = zoo_file
    line = convert(convert_args(path, tmp_path / "a.pt", verify=True))["verified"]
    assert "mmaction2's published i3d_imagenet-pretrained-r50-nl-dot-product_8xb8-32x2x1-100e_kinetics400-rgb.py" in line
    assert float(RATIO.search(line).group(1)) < 1e-4
    renamed = tmp_path / "mine.pth"
    torch.save({"meta": {"cfg": config.pretty_text}, "state_dict": state}, renamed)
    line = convert(convert_args(renamed, tmp_path / "b.pt", verify=True))["verified"]
    assert "from the checkpoint's meta['cfg']" in line and float(RATIO.search(line).group(1)) < 1e-4


@pytest.mark.slow
def test_verify_refuses_a_tampered_conversion_and_writes_nothing(zoo_file, tmp_path, monkeypatch):
    path, _, _ = zoo_file
    honest = CONVERTERS.get("mmaction2")

    def swapped(*args, **kwargs):  # theta and phi of one block exchanged: same keys, same shapes
        conversion = honest(*args, **kwargs)
        prefix = "backbone.res4.1.attention.nonlocal."
        state = conversion.state
        state[prefix + "theta.weight"], state[prefix + "phi.weight"] = state[prefix + "phi.weight"], state[prefix + "theta.weight"]
        return conversion

    monkeypatch.setitem(CONVERTERS._items, "mmaction2", swapped)
    with pytest.raises(UserError, match=r"--verify: max \|diff\| / max \|logit\| = .* above 0.0001.*nothing written"):
        convert(convert_args(path, tmp_path / "t.pt", verify=True))
    assert not list(tmp_path.iterdir())


def test_verify_names_the_missing_config_and_what_to_install(zoo_file, tmp_path, monkeypatch):
    path, state, _ = zoo_file
    renamed = tmp_path / "renamed_i3d.pth"
    torch.save({"meta": {}, "state_dict": state}, renamed)
    with pytest.raises(UserError, match=r"--verify: no mmaction2 config for renamed_i3d.pth: it has no meta\['cfg'\] "
                                        r"and mmaction2 publishes no config named renamed_i3d.py"):
        convert(convert_args(renamed, tmp_path / "r.pt", nonlocal_mode="dot_product", verify=True))
    monkeypatch.setitem(sys.modules, "mmaction", None)  # as if mmaction2 were not installed
    with pytest.raises(UserError, match=r"--verify needs mmaction2 .*: pip install mmaction2==1.2.0 mmcv-lite==2.1.0 "
                                        r"mmengine==0.10.7$"):
        convert(convert_args(path, tmp_path / "m.pt", verify=True))
    assert not list(tmp_path.glob("*.pt"))


@pytest.mark.slow
def test_verify_against_pytorchvideos_hub_model(tmp_path):
    hub = pytest.importorskip("pytorchvideo.models.hub.resnet", reason="pytorchvideo is a test-only dependency")
    theirs = hub.c2d_r50(pretrained=False)
    randomize(theirs, seed=5)
    path = tmp_path / "C2D_8x8_R50.pyth"
    torch.save({"model_state": theirs.state_dict()}, path)
    line = convert(convert_args(path, tmp_path / "c2d.pt", source="pytorchvideo", verify=True))["verified"]
    assert "pytorchvideo's hub c2d_r50" in line and float(RATIO.search(line).group(1)) < 1e-4
