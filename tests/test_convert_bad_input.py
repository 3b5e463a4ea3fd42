"""Bad input to `convert` ends in one `error:` line naming the file or key, exit code 2, and no output file:
a checkpoint of an architecture we lack (mmaction2's own X3D), a stored mmaction2 config that cannot be
parsed or has no model, an output folder that cannot be written."""
from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from configs.compose import load_config
from commands.convert import convert
from errors import UserError
from models.build import build_model
from models.export.mmaction2 import write_mmaction2
from tests.mmaction2_modules import require
from tests.test_convert_mmaction2 import convert_args

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def tiny_mmaction2(tmp_path):
    """A small mmaction2 I3D checkpoint (one of our tiny models exported) and its state dict."""
    cfg = load_config("configs/model/i3d_tiny.yaml", ["model.depth=50", "model.temporal.pool1_kernel=1",
                                                      "model.temporal.res2_pool_kernel=2"])
    path, _ = write_mmaction2(cfg.model, build_model(cfg.model, 4).state_dict(), tmp_path / "tiny_i3d")
    return path, torch.load(path, weights_only=True)


@pytest.mark.slow
def test_an_architecture_we_lack_exits_2_with_one_line(tmp_path):
    require()
    x3d = importlib.import_module("mmaction.models.backbones.x3d").X3D(gamma_w=1.0, gamma_b=1.0, gamma_d=1.0)
    path = tmp_path / "x3d_m_16x5x1_kinetics400.pth"
    torch.save({"state_dict": {f"backbone.{k}": v for k, v in x3d.state_dict().items()}, "meta": {}}, path)
    proc = subprocess.run([sys.executable, "run.py", "convert", "--source", "mmaction2", "--checkpoint", str(path),
                           "--out", str(tmp_path / "out" / "x3d.pt")], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: x3d_m_16x5x1_kinetics400.pth is not an mmaction2 ResNet "
                                                   "recognizer (no backbone.conv1.conv.weight"), proc.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("text, message", [
    ("model = dict(backbone=dict(type='ResNet3d'", r"tiny_i3d.pth: meta\['cfg'\] is not a readable mmaction2 config \(line 1"),
    ("optim_wrapper = dict(type='OptimWrapper')", r"tiny_i3d.pth: meta\['cfg'\] is not an mmaction2 model config "
                                                  r"\(no model=dict\(...\)\)"),
])
def test_a_stored_config_that_cannot_be_read_is_named(tiny_mmaction2, tmp_path, text, message):
    path, checkpoint = tiny_mmaction2
    torch.save({**checkpoint, "meta": {"cfg": text}}, path)
    with pytest.raises(UserError, match=message):
        convert(convert_args(path, tmp_path / "out.pt"))
    assert not (tmp_path / "out.pt").exists()


def test_an_output_folder_that_cannot_be_written_leaves_nothing(tiny_mmaction2, tmp_path):
    path, _ = tiny_mmaction2
    convert(convert_args(path, tmp_path / "ok.pt"))  # the file itself converts
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("")
    with pytest.raises(UserError, match=r"--out .*not_a_folder/tiny.pt: cannot write"):
        convert(convert_args(path, blocker / "tiny.pt"))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["not_a_folder", "ok.pt", "ok.yaml", "tiny_i3d.pth",
                                                                 "tiny_i3d.py"])
