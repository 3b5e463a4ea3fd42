"""The source toolkit's own model, for `convert --verify`: mmaction2 1.2.0's backbone and head modules built
from the checkpoint's stored config or the published config its model-zoo name names, pytorchvideo's hub
ResNet its file name names. Neither toolkit is a runtime dependency: absent, a `UserError` says what to install.

mmaction2 1.2.0's wheel lacks `mmaction/models/localizers/drn`, so `import mmaction.models` fails; the
packages on the way to the backbone and head modules are registered empty and only those modules imported.
"""
from __future__ import annotations

import importlib
import re
import sys
import types
from pathlib import Path
from typing import Any, Dict, Mapping, Tuple

import torch
from torch import nn

from errors import UserError

INSTALL = {"mmaction2": "pip install mmaction2==1.2.0 mmcv-lite==2.1.0 mmengine==0.10.7",
           "pytorchvideo": "pip install pytorchvideo==0.1.5"}
PACKAGES = ("mmaction.models", "mmaction.models.backbones", "mmaction.models.heads", "mmaction.models.common",
            "mmaction.models.losses")
MODULES = {"ResNet3d": "backbones.resnet3d", "ResNet": "backbones.resnet", "C2D": "backbones.c2d",
           "I3DHead": "heads.i3d_head", "TSNHead": "heads.tsn_head"}
PYTORCHVIDEO_HUB = {"i3d": "i3d_r50", "slow": "slow_r50", "c2d": "c2d_r50"}  # file name prefix -> hub model


def import_mmaction2() -> types.ModuleType:
    """The mmaction package, its model modules importable; a UserError naming the pip packages when absent."""
    try:
        import mmaction
        import mmengine  # noqa: F401
    except ImportError as exc:
        raise UserError(f"--verify needs mmaction2 ({exc}): {INSTALL['mmaction2']}") from exc
    root = Path(mmaction.__file__).parent
    for name in PACKAGES:
        if name not in sys.modules:
            package = types.ModuleType(name)
            package.__path__ = [str(root / Path(*name.split(".")[1:]))]
            sys.modules[name] = package
    importlib.import_module("mmaction.models.losses.cross_entropy_loss")  # the heads build their loss
    return mmaction


def missing_mmaction2() -> str:
    """'' when mmaction2's modules can be built here, else which packages are missing (mmcv-lite needs OpenCV)."""
    absent = []
    for name, package in (("mmaction", "mmaction2==1.2.0"), ("mmengine", "mmengine==0.10.7"),
                          ("cv2", "opencv-python"), ("mmcv", "mmcv-lite==2.1.0")):
        try:
            importlib.import_module(name)
        except ImportError as exc:
            absent.append(f"{package} ({exc})")
    return "; ".join(absent)


def published_config(relative: str):
    """An mmaction2 config shipped in its wheel, e.g. 'recognition/i3d/<name>.py', as an mmengine Config."""
    mmaction = import_mmaction2()
    from mmengine.config import Config

    return Config.fromfile(str(Path(mmaction.__file__).parent.joinpath(".mim", "configs", relative)))


def mmaction2_module(section: Mapping[str, Any]) -> nn.Module:
    """mmaction2's module for one `backbone=` or `cls_head=` dict of a config (weights as initialised)."""
    import_mmaction2()
    if section.get("type") not in MODULES:
        raise UserError(f"--verify: mmaction2 module '{section.get('type')}' is not one of {', '.join(MODULES)}")
    kwargs = {k: v for k, v in section.items() if k not in ("type", "pretrained", "pretrained2d")}
    module = importlib.import_module(f"mmaction.models.{MODULES[section['type']]}")
    return getattr(module, section["type"])(**kwargs)


class Mmaction2Recognizer(nn.Module):
    """What Recognizer3D / Recognizer2D do at test time: backbone on (N,C,T,H,W) or per frame, then the head."""

    def __init__(self, model: Mapping[str, Any]) -> None:
        super().__init__()
        self.backbone = mmaction2_module(model["backbone"])
        self.cls_head = mmaction2_module(model["cls_head"])
        self.two_d = model.get("type") == "Recognizer2D"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.two_d:  # (N, C, T, H, W) -> (N*T, C, H, W), consensus over the T segments in the head
            n, c, t, h, w = x.shape
            return self.cls_head(self.backbone(x.transpose(1, 2).reshape(n * t, c, h, w)), num_segs=t)
        return self.cls_head(self.backbone(x))


def mmaction2_config(checkpoint: Any, file_name: str) -> Tuple[Dict[str, Any], str]:
    """(mmengine config as a dict, where it came from): the checkpoint's `meta['cfg']`, else the published
    config of its model-zoo name (the name without `_DATE-HASH.pth`); a UserError when neither exists."""
    mmaction = import_mmaction2()
    from mmengine.config import Config

    meta = checkpoint.get("meta") if isinstance(checkpoint, dict) else None
    if isinstance(meta, dict) and isinstance(meta.get("cfg"), str):
        return Config.fromstring(meta["cfg"], ".py").to_dict(), "the checkpoint's meta['cfg']"
    stem = re.sub(r"_\d{8}-[0-9a-f]{8}$", "", Path(file_name).stem)
    found = sorted(Path(mmaction.__file__).parent.joinpath(".mim", "configs").rglob(f"{stem}.py"))
    if not found:
        raise UserError(f"--verify: no mmaction2 config for {file_name}: it has no meta['cfg'] and mmaction2 "
                        f"publishes no config named {stem}.py (keep the model zoo's file name)")
    return Config.fromfile(str(found[0])).to_dict(), f"mmaction2's published {found[0].name}"


def mmaction2_model(checkpoint: Any, file_name: str, state: Mapping[str, torch.Tensor]) -> Tuple[nn.Module, str, Any]:
    """(mmaction2's recognizer with the checkpoint's weights, in eval mode; config source; its data_preprocessor)."""
    config, where = mmaction2_config(checkpoint, file_name)
    model = Mmaction2Recognizer(config["model"])
    model.load_state_dict({k: v for k, v in state.items() if not k.startswith("data_preprocessor.")})
    return model.eval(), where, config["model"].get("data_preprocessor", {})


def pytorchvideo_model(file_name: str, state: Mapping[str, torch.Tensor]) -> Tuple[nn.Module, str]:
    """(pytorchvideo's hub ResNet named by the file name, with the checkpoint's weights, in eval mode; its name)."""
    try:
        hub = importlib.import_module("pytorchvideo.models.hub.resnet")
    except ImportError as exc:
        raise UserError(f"--verify needs pytorchvideo ({exc}): {INSTALL['pytorchvideo']}") from exc
    prefix = next((p for p in PYTORCHVIDEO_HUB if file_name.lower().startswith(p)), None)
    if prefix is None:
        raise UserError(f"--verify: {file_name} names no pytorchvideo hub ResNet (its name starts with none of "
                        f"{', '.join(p.upper() for p in PYTORCHVIDEO_HUB)})")
    model = getattr(hub, PYTORCHVIDEO_HUB[prefix])(pretrained=False)
    model.load_state_dict(state)
    return model.eval(), f"pytorchvideo's hub {PYTORCHVIDEO_HUB[prefix]}"
