"""Our model as an mmaction2 1.x recognizer: a checkpoint (`state_dict` and `meta`, as mmengine saves) and
the config text mmaction2 builds it from, for the architectures mmaction2 has: I3D (ResNet3d with mmcv
non-local blocks), C2D and TSN (ResNet). Keys are renamed by the converter's own table read backwards
(models/converters/mmaction2.py), so mmaction2 -> ours -> mmaction2 gives back the same tensors.

Anything mmaction2 cannot express (another attention block, the pyramid head, our default non-local paper
pools, a width multiplier on a 2D ResNet) is a `UserError` naming the part and the key.
"""
from __future__ import annotations

import os
import pprint
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from omegaconf import OmegaConf

from errors import UserError
from models.backbones.resnet3d import LAYOUTS, default_inflation
from models.config import ModelConfig
from models.converters.mmaction2 import rename
from models.placement import explicit_entry

MMACTION2_VERSION = "1.2.0"


def _plain(value: Any) -> Any:
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def _pool_kernel(kernel: int, stride: int) -> int:
    return kernel or 2 * stride - 1  # how models/backbones/resnet3d.py reads 0


def _refuse(part: str, key: str, value: Any, theirs: str) -> UserError:
    return UserError(f"mmaction2 has no {part} ({key}={value}); {theirs}")


def _nonlocal_settings(cfg: ModelConfig, layout: Sequence[int]) -> Tuple[List[List[int]], Dict[str, Any]]:
    """mmaction2's `non_local` flags per block and its one `non_local_cfg`, from our attention entries."""
    flags = [[0] * n for n in layout]
    options = set()
    depths = {f"res{stage}": count for stage, count in zip(range(2, 6), layout)}
    for index, raw in enumerate(_plain(cfg.attention)):
        where = f"model.attention.{index}"
        if raw.get("type") != "nonlocal":
            raise _refuse(f"'{raw.get('type')}' attention block", f"{where}.type", raw.get("type"),
                          "its ResNet3d places only mmcv non-local blocks")
        entry = explicit_entry(raw, depths, where)
        if entry["groups"] != 1:
            raise _refuse("grouped non-local block", f"{where}.groups", entry["groups"],
                          "mmcv's NonLocal3d attends over the whole clip")
        if entry["mode"] == "gaussian" and entry["scale"]:
            raise _refuse("scaled Gaussian non-local block", f"{where}.scale", True, "mmcv scales embedded Gaussian only")
        options.add((entry["mode"], entry["reduction"], entry["subsample"], bool(entry["scale"])))
        for stage, blocks in zip(entry["stages"], entry["blocks"]):
            for j in blocks:
                flags[stage - 2][j] = 1
    if len(options) > 1:
        raise UserError(f"mmaction2 has one non_local_cfg for all blocks; model.attention has {len(options)} "
                        f"different settings {sorted(options)}")
    if not options:
        return flags, {}
    mode, reduction, subsample, scale = options.pop()
    return flags, {"sub_sample": subsample, "use_scale": scale and mode == "embedded_gaussian", "reduction": reduction,
                   "norm_cfg": {"type": "BN3d", "requires_grad": True}, "mode": mode}


def _backbone(cfg: ModelConfig) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """(backbone, non_local_cfg) of mmaction2's config for our model config, or a UserError."""
    t = cfg.temporal
    if cfg.iaa.enabled:
        raise _refuse("pyramid attention head", "model.iaa.enabled", True, "its heads are linear classifiers")
    layout = LAYOUTS[cfg.depth][1]
    stem = max(1, round(64 * cfg.width))
    if cfg.arch == "i3d":
        if _pool_kernel(t.pool1_kernel, t.pool1_stride) != 1:
            raise _refuse("pool1 with a temporal kernel", "model.temporal.pool1_kernel", t.pool1_kernel,
                          "its ResNet3d pool1 is 1x3x3 (set model.temporal.pool1_kernel=1 and train that)")
        if (t.res2_pool_stride, _pool_kernel(t.res2_pool_kernel, t.res2_pool_stride)) not in ((1, 1), (2, 2)):
            raise _refuse("temporal pool after res2 of this kernel", "model.temporal.res2_pool_kernel",
                          t.res2_pool_kernel, "its pool2 is 2x1x1 stride 2, or none")
        if cfg.stem_pool_padding != 1:
            raise _refuse("unpadded stem pool in ResNet3d", "model.stem_pool_padding", cfg.stem_pool_padding,
                          "its pool1 pads by 1")
        flags, non_local = _nonlocal_settings(cfg, layout)
        inflate = _plain(cfg.inflate) or default_inflation(cfg.depth)
        if cfg.depth < 50 and any(any(f) for f in inflate):
            raise _refuse("basic block inflating only its first conv", "model.inflate", inflate,
                          "its BasicBlock3d inflates both 3x3 convs (depth 50 or 101, or no inflation, export)")
        backbone = {"type": "ResNet3d", "depth": cfg.depth, "pretrained": None, "pretrained2d": False,
                    "base_channels": stem, "conv1_kernel": (t.conv1_kernel, 7, 7), "conv1_stride_t": t.conv1_stride,
                    "pool1_stride_t": t.pool1_stride, "with_pool2": t.res2_pool_stride == 2,
                    "inflate": tuple(tuple(f) for f in inflate), "zero_init_residual": False, "norm_eval": False}
        if non_local:
            backbone.update(non_local=tuple(tuple(f) for f in flags), non_local_cfg=non_local)
        return backbone, non_local
    if cfg.attention:
        raise _refuse(f"attention blocks in its 2D ResNet ({cfg.arch})", "model.attention.0.type",
                      cfg.attention[0]["type"], "only its ResNet3d (I3D) has non-local blocks")
    if stem != 64:
        raise _refuse(f"channel width multiplier for {cfg.arch}", "model.width", cfg.width, "its ResNet is 64 wide")
    if cfg.arch == "c2d":
        expected = {"conv1_stride": 1, "pool1_stride": 1, "res2_pool_stride": 2}
        for name, value in expected.items():
            if getattr(t, name) != value:
                raise _refuse(f"C2D with temporal {name} {getattr(t, name)}", f"model.temporal.{name}",
                              getattr(t, name), f"its C2D has {value}")
        if _pool_kernel(t.res2_pool_kernel, 2) != 2 or cfg.stem_pool_padding != 0:
            raise _refuse("C2D with these pools", "model.temporal.res2_pool_kernel", t.res2_pool_kernel,
                          "its C2D pools 2x1x1 after res2 and has an unpadded stem pool (model.stem_pool_padding=0)")
        return {"type": "C2D", "depth": cfg.depth, "pretrained": None, "norm_eval": False}, {}
    if cfg.arch == "tsn":
        return {"type": "ResNet", "depth": cfg.depth, "pretrained": None, "norm_eval": False}, {}
    raise _refuse(f"architecture '{cfg.arch}'", "model.arch", cfg.arch, "it has i3d, c2d and tsn")


def mmaction2_config(cfg: ModelConfig, num_classes: int,
                     normalisation: Optional[Tuple[Sequence[float], Sequence[float]]] = None) -> Dict[str, Any]:
    """mmaction2's `model=dict(...)` for our model config (a UserError for what mmaction2 lacks)."""
    backbone, _ = _backbone(cfg)
    channels = max(1, round(64 * cfg.width)) * 8 * (4 if cfg.depth >= 50 else 1)
    two_d = cfg.arch == "tsn"
    head = {"type": "TSNHead" if two_d else "I3DHead", "num_classes": num_classes, "in_channels": channels,
            "spatial_type": "avg", "dropout_ratio": cfg.dropout, "init_std": 0.01, "average_clips": "prob"}
    if two_d:
        head["consensus"] = {"type": "AvgConsensus", "dim": 1}
    preprocessor: Dict[str, Any] = {"type": "ActionDataPreprocessor", "format_shape": "NCHW" if two_d else "NCTHW"}
    if normalisation is not None:
        preprocessor.update(mean=[round(v * 255, 6) for v in normalisation[0]],
                            std=[round(v * 255, 6) for v in normalisation[1]])
    return {"type": "Recognizer2D" if two_d else "Recognizer3D", "backbone": backbone, "cls_head": head,
            "data_preprocessor": preprocessor}


def mmaction2_state_dict(cfg: ModelConfig, state_dict: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Our tensors under mmaction2's keys (its 2D ResNets with 2D kernels, mmcv's concat projection shape)."""
    _, non_local = _backbone(cfg)
    sub = ".0" if non_local.get("sub_sample") else ""
    two_d = cfg.arch in ("tsn", "c2d")
    theirs = {}
    for key, value in state_dict.items():
        name = rename(key, to_ours=False, sub=sub)
        if name is None:
            raise UserError(f"mmaction2 has no counterpart of our layer '{key}'")
        if name.endswith("concat_project.conv.weight"):
            value = value.view(1, -1, 1, 1)
        elif two_d and value.dim() == 5:
            value = value.squeeze(2)
        theirs[name] = value
    return theirs


def write_mmaction2(model_cfg: ModelConfig, state_dict: Mapping[str, torch.Tensor], out_path: Path,
                    normalisation: Optional[Tuple[Sequence[float], Sequence[float]]] = None) -> List[Path]:
    """Write OUT.pth (mmaction2's checkpoint: `state_dict`, `meta` with the config text) and OUT.py (that
    config); `normalisation` (mean, std on 0..1) goes into its data_preprocessor. Returns both paths."""
    num_classes = int(state_dict["head.fc.weight"].shape[0])
    model = mmaction2_config(model_cfg, num_classes, normalisation)
    theirs = mmaction2_state_dict(model_cfg, state_dict)
    note = "" if normalisation else ("# data_preprocessor has no mean/std: set those the model was trained with, "
                                     "on 0..255\n")
    text = (f"# mmaction2 {MMACTION2_VERSION} config of an exported model\n{note}"
            f"model = {pprint.pformat(model, sort_dicts=False, width=100)}\n")
    out_path = Path(out_path)
    paths = [out_path.with_suffix(".pth"), out_path.with_suffix(".py")]
    temps = [p.with_name(f".{p.name}.tmp-{os.getpid()}") for p in paths]
    try:
        torch.save({"state_dict": theirs, "meta": {"mmaction2_version": MMACTION2_VERSION, "cfg": text}}, temps[0])
        temps[1].write_text(text)
        for tmp, path in zip(temps, paths):
            os.replace(tmp, path)
    except OSError as exc:
        raise UserError(f"cannot write {paths[0]} and {paths[1]} ({exc.strerror or exc})") from exc
    finally:
        for tmp in temps:
            tmp.unlink(missing_ok=True)
    return paths
