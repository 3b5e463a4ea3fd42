"""mmaction2 1.2.0's own backbones and heads, built from its published configs, for equivalence tests.

The 1.2.0 wheel lacks `mmaction/models/localizers/drn`, so `import mmaction.models` fails; the packages
on the way to the backbone and head modules are registered empty, and only those modules are imported.
Absent mmaction2 (it is a test-only dependency), `require()` skips with the reason.
"""
from __future__ import annotations

import importlib
import sys
import types
from pathlib import Path
from typing import Any, Dict

import pytest

PACKAGES = ("mmaction.models", "mmaction.models.backbones", "mmaction.models.heads", "mmaction.models.common",
            "mmaction.models.losses")


def require():
    """The mmaction package, or a pytest skip naming what is missing."""
    try:
        import mmaction  # noqa: F401
        import mmengine  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"mmaction2 is not installed ({exc}); `make test` installs requirements-test.txt")
    root = Path(sys.modules["mmaction"].__file__).parent
    for name in PACKAGES:
        if name not in sys.modules:
            package = types.ModuleType(name)
            package.__path__ = [str(root / Path(*name.split(".")[1:]))]
            sys.modules[name] = package
    importlib.import_module("mmaction.models.losses.cross_entropy_loss")  # the heads build their loss
    return sys.modules["mmaction"]


def published_config(relative: str):
    """An mmaction2 config shipped in the wheel, e.g. 'recognition/i3d/<name>.py', as an mmengine Config."""
    mmaction = require()
    from mmengine.config import Config

    return Config.fromfile(str(Path(mmaction.__file__).parent / ".mim" / "configs" / relative))


def build(section: Dict[str, Any]):
    """mmaction2's module for one `backbone=` or `cls_head=` dict of a config (weights left as initialised)."""
    require()
    kwargs = {k: v for k, v in section.items() if k not in ("type", "pretrained", "pretrained2d")}
    where = {"ResNet3d": "backbones.resnet3d", "ResNet": "backbones.resnet", "C2D": "backbones.c2d",
             "I3DHead": "heads.i3d_head", "TSNHead": "heads.tsn_head"}[section["type"]]
    module = importlib.import_module(f"mmaction.models.{where}")
    return getattr(module, section["type"])(**kwargs)
