"""mmaction2 1.2.0's own backbones and heads, built from its published configs (the reference we are timed
and proven against).

The 1.2.0 wheel lacks `mmaction/models/localizers/drn`, so `import mmaction.models` fails; the packages
on the way to the backbone and head modules are registered empty, and only those modules are imported.
mmaction2, mmengine and mmcv-lite (which needs OpenCV) are optional: `missing()` names what is absent.
"""
from __future__ import annotations

import importlib
import sys
import types
from pathlib import Path
from typing import Any, Dict

import torch
from torch import nn

PACKAGES = ("mmaction.models", "mmaction.models.backbones", "mmaction.models.heads", "mmaction.models.common",
            "mmaction.models.losses")
NEEDED = {"mmaction": "mmaction2==1.2.0", "mmengine": "mmengine==0.10.7", "cv2": "opencv-python",
          "mmcv": "mmcv-lite==2.1.0"}  # import name -> what to install (mmcv imports cv2 first)
NL_I3D_R50 = "recognition/i3d/i3d_imagenet-pretrained-r50-nl-embedded-gaussian_8xb8-32x2x1-100e_kinetics400-rgb.py"


def missing() -> str:
    """'' when mmaction2's modules can be built here, else which packages are missing and why."""
    absent = []
    for name, package in NEEDED.items():
        try:
            importlib.import_module(name)
        except ImportError as exc:
            absent.append(f"{package} ({exc})")
    return "; ".join(absent)


def load_mmaction2():
    """The mmaction package with the packages to its backbones and heads registered (ImportError if absent)."""
    import mmaction
    import mmengine  # noqa: F401

    root = Path(mmaction.__file__).parent
    for name in PACKAGES:
        if name not in sys.modules:
            package = types.ModuleType(name)
            package.__path__ = [str(root / Path(*name.split(".")[1:]))]
            sys.modules[name] = package
    importlib.import_module("mmaction.models.losses.cross_entropy_loss")  # the heads build their loss
    return mmaction


def published_config(relative: str):
    """An mmaction2 config shipped in the wheel, e.g. 'recognition/i3d/<name>.py', as an mmengine Config."""
    mmaction = load_mmaction2()
    from mmengine.config import Config

    return Config.fromfile(str(Path(mmaction.__file__).parent.joinpath(".mim", "configs", relative)))


def build(section: Dict[str, Any]) -> nn.Module:
    """mmaction2's module for one `backbone=` or `cls_head=` dict of a config (weights left as initialised)."""
    load_mmaction2()
    kwargs = {k: v for k, v in section.items() if k not in ("type", "pretrained", "pretrained2d")}
    where = {"ResNet3d": "backbones.resnet3d", "ResNet": "backbones.resnet", "C2D": "backbones.c2d",
             "I3DHead": "heads.i3d_head", "TSNHead": "heads.tsn_head"}[section["type"]]
    module = importlib.import_module(f"mmaction.models.{where}")
    return getattr(module, section["type"])(**kwargs)


class Mmaction2Recognizer(nn.Module):
    """What Recognizer3D / Recognizer2D do: backbone on (N,C,T,H,W) or per frame, then the head's logits."""

    def __init__(self, config, backbone_changes: Dict[str, Any] | None = None,
                 head_changes: Dict[str, Any] | None = None):
        super().__init__()
        self.backbone = build({**config.model.backbone, **(backbone_changes or {})})
        self.cls_head = build({**config.model.cls_head, **(head_changes or {})})
        self.two_d = config.model.type == "Recognizer2D"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.two_d:  # (N, C, T, H, W) -> (N*T, C, H, W), consensus over the T segments in the head
            n, c, t, h, w = x.shape
            return self.cls_head(self.backbone(x.transpose(1, 2).reshape(n * t, c, h, w)), num_segs=t)
        return self.cls_head(self.backbone(x))
