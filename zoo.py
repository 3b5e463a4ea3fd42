"""The shipped model configs from Python, timm-style:

    from zoo import create_model, list_models, load_model
    model = create_model("i3d_r50_nl5", num_classes=400, dropout=0.3, **{"temporal.conv1_stride": 1})
    model, labels = load_model("nl_i3d.pt")  # a checkpoint of ours (trained, or from `run.py convert`)

`name` is a file of configs/model (its `defaults:` included); keyword overrides are `model.*` keys, dotted
for nested ones; the model has fresh weights, in training mode. `load_model` rebuilds a checkpoint's
own architecture (its config, not a named one, so weights never land in a different network).
"""
from __future__ import annotations

from typing import Any, List, Tuple

from omegaconf import OmegaConf
from torch import nn

from configs.compose import load_config, model_config_file, model_config_names
from engine.checkpoint import load_trained
from models.build import build_model


def list_models() -> List[str]:
    """Names accepted by `create_model`."""
    return model_config_names()


def create_model(name: str, num_classes: int = 400, **overrides: Any) -> nn.Module:
    """The network of configs/model/<name>.yaml with `model.*` overrides."""
    items = [f"model.{key}={OmegaConf.to_yaml(OmegaConf.create(value)).strip() if isinstance(value, (list, dict)) else value}"
             for key, value in overrides.items()]
    return build_model(load_config(str(model_config_file(name)), items).model, num_classes)


def load_model(checkpoint: str) -> Tuple[nn.Module, List[str]]:
    """(model in eval mode on the CPU, class names) of a checkpoint file."""
    model, _, labels = load_trained(checkpoint)
    return model, labels
