"""Grad-CAM over space and time (Selvaraju et al., 2017) for any layer of our video models.

For a layer's output A (channels x T' x H' x W') and a class score y, the map is ReLU(sum_c w_c A_c)
with w_c the mean of dy/dA_c over T', H', W'. Layers are named as `visualize` names attention blocks:
a stage (`res4`), a residual block (`res4.3`), or an attention block placed after one
(`res4.3.nonlocal`). TSN folds its segments into the batch, so there A is (T x channels x 1 x H' x W')
and the weights average over the segments too: one map per segment, comparable across them. The map
is upsampled to the clip (trilinear) and scaled to [0, 1] by its maximum.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from errors import UserError
from models.backbones.resnet3d import STAGES


def layer_names(model: nn.Module) -> Dict[str, nn.Module]:
    """Every explainable layer by name: stages, residual blocks, placed attention blocks."""
    backbone = model.backbone
    layers: Dict[str, nn.Module] = {}
    for stage in STAGES:
        layers[stage] = backbone.get_submodule(stage)
        for j, block in enumerate(backbone.get_submodule(stage)):
            layers[f"{stage}.{j}"] = block
            for kind, attention in block.attention.items():
                layers[f"{stage}.{j}.{kind}"] = attention
    return layers


def find_layer(model: nn.Module, name: str) -> nn.Module:
    layers = layer_names(model)
    if name not in layers:
        raise UserError(f"predict.gradcam_layer='{name}' is not a layer of this model; valid: {', '.join(layers)}")
    return layers[name]


@dataclass
class ClassActivation:
    """A Grad-CAM map (T, H, W) in [0, 1] on the clip's frames, for one class."""

    layer: str
    class_index: int
    score: float  # the class's softmax probability on this clip
    heat: np.ndarray
    grid: List[int]  # the layer's (T', H', W')


def grad_cam(model: nn.Module, clip: torch.Tensor, layer_name: str, class_index: int | None = None) -> ClassActivation:
    """Grad-CAM of `layer_name` for `class_index` (default: the predicted class) on one clip (1, 3, T, H, W)."""
    if clip.shape[0] != 1:
        raise ValueError("grad_cam explains one clip at a time")
    layer = find_layer(model, layer_name)
    captured: Dict[str, torch.Tensor] = {}

    def keep(_module, _inputs, output):
        output.register_hook(lambda grad: captured.__setitem__("grad", grad))
        captured["activation"] = output

    handle = layer.register_forward_hook(keep)
    try:
        with torch.enable_grad():
            logits = model.eval()(clip)
            chosen = int(logits.argmax()) if class_index is None else class_index
            logits[0, chosen].backward()
    finally:
        handle.remove()
    model.zero_grad(set_to_none=True)
    activation, grad = captured["activation"].detach(), captured["grad"]
    weights = grad.mean(dim=(0, 2, 3, 4), keepdim=True)  # per channel, over segments and the grid
    cam = torch.relu((weights * activation).sum(dim=1))  # (N, T', H', W')
    grid = [cam.shape[0] * cam.shape[1], cam.shape[2], cam.shape[3]]
    cam = cam.reshape(1, 1, *grid)  # TSN: N = segments, T' = 1; 3D networks: N = 1
    heat = F.interpolate(cam, size=tuple(clip.shape[2:]), mode="trilinear", align_corners=False)[0, 0]
    heat = heat / heat.max() if heat.max() > 0 else heat
    score = float(logits.detach().softmax(-1)[0, chosen])
    return ClassActivation(layer_name, chosen, score, heat.cpu().numpy(), grid)
