"""Export: onnxruntime and TorchScript give our logits for every shipped model config, each non-local mode
and every attention plug-in (tiny widths and clips); `run.py export` writes self-describing files."""
from __future__ import annotations

import json
from functools import lru_cache

import numpy as np
import onnx
import onnxruntime
import pytest
import torch

from configs.compose import load_config
from models.build import build_model
from models.export import FORMATS, ExportRequest
from tests.conftest import ROOT
from bench.random_weights import randomize

CONFIGS = {path.stem: (path, []) for path in sorted((ROOT / "configs" / "model").glob("*.yaml"))}
NARROW = ["model.width=0.0625"]  # the R50 configs keep their depth and placements, at 1/16 of the width
VARIANTS = {  # what the shipped configs leave out: the other non-local modes and attention plug-ins
    "nl_gaussian_dot_product": (ROOT / "configs/model/i3d_tiny.yaml", [
        "model.attention=[{type: nonlocal, stages: [3], blocks: [1], mode: gaussian},"
        " {type: nonlocal, stages: [4], blocks: [1], mode: dot_product}]"]),
    "nl_concatenation": (ROOT / "configs/model/i3d_tiny.yaml", [  # its fused path has no ONNX form
        "model.attention=[{type: nonlocal, stages: [3, 4], blocks: [1], mode: concatenation}]"]),
    "se_bam_fla": (ROOT / "configs/model/i3d_tiny.yaml", [
        "model.attention=[{type: se, stages: [2], reduction: 4}, {type: bam, stages: [3], reduction: 4},"
        " {type: fla, stages: [4]}]"]),
    "danet_pam_cam": (ROOT / "configs/model/c2d_tiny_nl.yaml", [
        "model.attention=[{type: pam, stages: [3], blocks: [0]}, {type: cam, stages: [4]}]"]),
}
CASES = {**CONFIGS, **VARIANTS}
CLIP = (2, 3, 8, 32, 32)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@lru_cache(maxsize=None)
def model_of(case: str) -> torch.nn.Module:
    """The case's model with random weights, BN statistics and gates (no block is an identity), eval mode."""
    path, overrides = CASES[case]
    model = build_model(load_config(str(path), overrides + (NARROW if "_r50" in case else [])).model, 5)
    randomize(model, seed=len(case))
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if parameter.numel() == 1:  # DANet's and FLA's residual gates start at 0
                parameter.fill_(0.7)
    return model.eval()


def export(case: str, fmt: str, tmp_path, **options):
    model = model_of(case)
    request = ExportRequest(model, None, CLIP, {"case": case}, tmp_path / f"{case}.{fmt}", **options)
    return model, FORMATS.get(fmt)(request)


@lru_cache(maxsize=None)
def logits_of(case: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(a clip other than the exporter's own check uses, our logits for it)."""
    clip = torch.randn(CLIP, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        return clip, model_of(case)(clip)


def relative_error(got: np.ndarray, expected: torch.Tensor) -> float:
    return float(np.abs(got - expected.numpy()).max() / expected.abs().max())


@pytest.mark.parametrize("case", sorted(CASES))
def test_onnxruntime_gives_our_logits(case, tmp_path, capfd):
    _, result = export(case, "onnx", tmp_path)
    assert capfd.readouterr().out == ""  # the exporter prints nothing itself; its notes are the lines
    fallbacks = [note for note in result.notes if "reference path" in note]
    assert len(fallbacks) == (1 if case == "nl_concatenation" else 0), result.notes
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(result.paths[0]), options, providers=["CPUExecutionProvider"])
    clip, expected = logits_of(case)
    assert relative_error(session.run(None, {"clip": clip.numpy()})[0], expected) <= 1e-4
    assert session.get_modelmeta().custom_metadata_map["case"] == case


@pytest.mark.parametrize("case", sorted(CASES))
def test_torchscript_gives_our_logits(case, tmp_path):
    _, result = export(case, "torchscript", tmp_path)
    extra = {"metadata.json": ""}
    loaded = torch.jit.load(str(result.paths[0]), _extra_files=extra)
    clip, expected = logits_of(case)
    with torch.no_grad():
        assert relative_error(loaded(clip).numpy(), expected) <= 1e-4
    assert json.loads(extra["metadata.json"]) == {"case": case}
