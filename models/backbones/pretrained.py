"""Load ImageNet 2D ResNet weights (a torchvision-format state dict file) into a 2D or inflated backbone.

A 2D kernel (O, I, kh, kw) becomes (O, I, kt, kh, kw) by repeating it kt times and dividing by kt, so
an inflated network on a clip of identical frames computes the 2D network's features (away from the
zero padding at the clip's first and last frames). The classifier (`fc.*`) is not loaded.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Dict

import torch
from torch import nn

from errors import UserError
from models.weights import read_torch_file, state_dict_mismatch


def torchvision_key(key: str) -> str:
    """torchvision `layer1.` .. `layer4.` are our `res2.` .. `res5.`."""
    return re.sub(r"^layer([1-4])\.", lambda m: f"res{int(m.group(1)) + 1}.", key)


def _read_state_dict(path: Path) -> Dict[str, torch.Tensor]:
    state = read_torch_file(path, "model.pretrained")
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"model.pretrained: {path} does not hold a state dict of tensors")
    return state


def inflate_kernel(key: str, source: torch.Tensor, target: torch.Tensor, where: str) -> torch.Tensor:
    """`source` shaped as `target`: unchanged, or a 2D kernel repeated over time and divided by kt."""
    if source.shape == target.shape:
        return source
    if source.dim() == 4 and target.dim() == 5 and source.shape == target.shape[:2] + target.shape[3:]:
        kt = target.shape[2]
        return source.unsqueeze(2).repeat(1, 1, kt, 1, 1) / kt
    raise UserError(f"{where}: '{key}' has shape {tuple(source.shape)}, "
                    f"the model needs {tuple(target.shape)} (check model.depth and model.width)")


def load_2d_weights(backbone: nn.Module, path: str) -> None:
    """Copy every backbone weight from the file, inflating 2D kernels; any mismatch is a `UserError`."""
    file = Path(path)
    source = {torchvision_key(k): v for k, v in _read_state_dict(file).items() if not k.startswith("fc.")}
    target = backbone.state_dict()
    mismatch = state_dict_mismatch(target, source, check_shapes=False)  # 2D kernels inflate: inflate_kernel checks
    if mismatch:
        raise UserError(f"model.pretrained: {file} does not match the backbone "
                        f"(check model.depth and model.width): {mismatch}")
    backbone.load_state_dict({k: inflate_kernel(k, source[k], target[k], f"model.pretrained: {file}")
                              for k in target})
