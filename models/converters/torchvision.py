"""torchvision ImageNet ResNets into our model: a 2D network per segment (TSN, the default) or inflated
into C2D / I3D (`arch`), the ImageNet classifier kept as the head (1000 classes, or whatever `fc` holds).

Kernels are inflated as `model.pretrained` does (repeated over time, divided by the temporal size), so an
inflated network on a clip of identical frames scores as the image network does on that frame.
"""
from __future__ import annotations

import re
from typing import Any, Dict, Optional

from omegaconf import OmegaConf

from errors import UserError
from models.backbones.pretrained import inflate_kernel, torchvision_key
from models.build import build_model
from models.config import ModelConfig
from models.converters.common import CONVERTERS, Conversion, resnet_depth, take_state_dict

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


def _depth(state: Dict[str, Any], source: str) -> int:
    counts = tuple(len({m.group(1) for k in state if (m := re.match(rf"layer{i}\.(\d+)\.", k))}) for i in range(1, 5))
    return resnet_depth(counts, "layer1.0.conv3.weight" in state, source)


@CONVERTERS.register("torchvision")
def convert_torchvision(checkpoint: Any, file_name: str, arch: Optional[str] = None,
                        nonlocal_mode: Optional[str] = None) -> Conversion:
    """A torchvision ResNet state dict -> our `arch` (default tsn) with the same depth and classifier."""
    if nonlocal_mode is not None:
        raise UserError("--nonlocal-mode: torchvision ResNets have no non-local blocks")
    state = take_state_dict(checkpoint, file_name)
    if "conv1.weight" not in state or "fc.weight" not in state:
        raise UserError(f"{file_name} is not a torchvision ResNet state dict (no conv1.weight or fc.weight)")
    depth = _depth(state, file_name)
    target = build_model(OmegaConf.merge(OmegaConf.structured(ModelConfig), {"arch": arch or "tsn", "depth": depth}),
                         int(state["fc.weight"].shape[0]))
    target_state = target.state_dict()
    ours, unused = {}, []
    for key, value in state.items():
        name = f"head.{key}" if key.startswith("fc.") else f"backbone.{torchvision_key(key)}"
        if name not in target_state:
            unused.append(key)
            continue
        ours[name] = inflate_kernel(key, value, target_state[name], file_name).clone()
    conversion = Conversion(state=ours, unused=unused)
    conversion.put("model.arch", arch or "tsn", "--arch" if arch else
                   "what a 2D network becomes without --arch: TSN, the network on each segment")
    conversion.put("model.depth", depth, "the weights (blocks per stage)")
    conversion.put("model.width", state["conv1.weight"].shape[0] / 64, "the weights (conv1's channels)")
    conversion.put("model.attention", [], "the weights (torchvision ResNets have no attention blocks)")
    conversion.put("model.iaa.enabled", False, "the weights (a linear classifier)")
    conversion.put("model.num_classes", int(state["fc.weight"].shape[0]), "the weights (fc)")
    conversion.put("data.transforms", {"mean": IMAGENET_MEAN, "std": IMAGENET_STD}, "torchvision's ImageNet recipe")
    if (arch or "tsn") == "tsn":
        conversion.put("data.sampling.mode", "segments", "TSN's sampling")
    return conversion
