"""What every checkpoint converter returns, and the strict key accounting they share.

A converter maps a foreign state dict onto the keys of our `VideoClassifier` and infers the config the
weights need, naming for each key where it was read (models/converters/settings.py holds the rule that
user settings may fill in but never contradict them). `Conversion.check_against(model)` proves that every key of the model is filled with a
tensor of the right shape and every source key was used, or raises one `UserError` naming the first few.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List

import torch
from torch import nn

from errors import UserError
from models.backbones.resnet3d import LAYOUTS, Bottleneck
from models.converters.settings import flatten
from models.registry import Registry

CONVERTERS = Registry("convert --source")


@dataclass
class Conversion:
    """Our state dict, the config sections it needs (plain dicts) and, per dotted key, where each was read."""

    state: Dict[str, torch.Tensor]
    settings: Dict[str, Dict[str, Any]] = field(default_factory=lambda: {"model": {}, "data": {}, "test": {}})
    sources: Dict[str, str] = field(default_factory=dict)
    unused: List[str] = field(default_factory=list)  # source keys no rule consumed

    def put(self, key: str, value: Any, source: str) -> None:
        """Set the dotted config key (e.g. `model.temporal.conv1_stride`) and record `source` for it."""
        *parents, last = key.split(".")
        node = self.settings
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
        self.sources.update({leaf: source for leaf in flatten(value, key)})

    def cite(self, key: str, source: str) -> None:
        """Name another source for one key already put (e.g. one option of an attention entry)."""
        self.sources[key] = source

    def check_against(self, model: nn.Module, source: str) -> None:
        """Every model key filled with the right shape, every source key used; else one UserError."""
        target = model.state_dict()
        missing = [k for k in target if k not in self.state]
        extra = [k for k in self.state if k not in target]
        problems = [(what, keys) for what, keys in (("left over in the source", self.unused),
                                                     ("missing from the source", missing),
                                                     ("not in the model", extra)) if keys]
        if problems:
            raise UserError(f"{source}: keys " + "; ".join(
                f"{what}: {', '.join(keys[:4])}{' ...' if len(keys) > 4 else ''} ({len(keys)})"
                for what, keys in problems))
        for key, tensor in self.state.items():
            if tuple(tensor.shape) != tuple(target[key].shape):
                raise UserError(f"{source}: layer '{key}' has shape {tuple(tensor.shape)} in the source, "
                                f"the model needs {tuple(target[key].shape)}")


Converter = Callable[..., Conversion]


def take_state_dict(checkpoint: Any, source: str) -> Dict[str, torch.Tensor]:
    """The tensor dict inside a loaded checkpoint file (`state_dict`, `model` or the file itself)."""
    for key in ("state_dict", "model", "model_state"):
        if isinstance(checkpoint, dict) and isinstance(checkpoint.get(key), dict):
            checkpoint = checkpoint[key]
            break
    if not isinstance(checkpoint, dict) or not checkpoint or \
            not all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        raise UserError(f"{source} holds no state dict of tensors")
    return checkpoint


def resnet_depth(counts: tuple, bottleneck: bool, source: str) -> int:
    """The ResNet depth with `counts` blocks per stage of this block type, or a UserError."""
    for depth, (block, layout) in LAYOUTS.items():
        if tuple(layout) == tuple(counts) and (block is Bottleneck) == bottleneck:
            return depth
    raise UserError(f"{source}: blocks per stage {tuple(counts)} ({'bottleneck' if bottleneck else 'basic'}) "
                    f"match no ResNet depth of {', '.join(map(str, LAYOUTS))}")
