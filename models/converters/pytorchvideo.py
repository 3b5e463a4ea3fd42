"""pytorchvideo ResNets (`create_resnet`: its hub's i3d_r50, slow_r50, c2d_r50 and their `.pyth` model-zoo
files, `{"model_state": ...}`) into our I3D / C2D.

From the weights: depth, conv1's temporal kernel, every block's inflation (C2D when no kernel has time).
Not in the weights: the stem has no temporal stride and a (1,3,3) pool; I3D and C2D pool time by a
(2,1,1) max-pool after res2, Slow has none (`slow` in the file name). The head averages the whole res5
map (their AvgPool3d covers it at the 8x224 input they were trained on) before the projection.
Normalisation: pytorchvideo's Kinetics mean 0.45 and std 0.225 on 0..1; clips 8 frames at stride 8.
"""
from __future__ import annotations

import re
from collections import defaultdict
from typing import Any, Dict, Optional

from errors import UserError
from models.converters.common import CONVERTERS, Conversion, resnet_depth, take_state_dict

BRANCH = {"a": "1", "b": "2", "c": "3"}
MEAN, STD = [0.45, 0.45, 0.45], [0.225, 0.225, 0.225]


def _stages(state: Dict[str, Any]) -> Dict[int, str]:
    """pytorchvideo block index -> our stage name, for the blocks that hold residual blocks."""
    indices = sorted({int(m.group(1)) for k in state if (m := re.match(r"blocks\.(\d+)\.res_blocks\.", k))})
    if len(indices) != 4:
        raise UserError(f"expected 4 residual stages in blocks.N.res_blocks, found {len(indices)}")
    return {index: f"res{stage}" for stage, index in enumerate(indices, start=2)}


def _rename(key: str, stages: Dict[int, str], head: int) -> Optional[str]:
    if key == "blocks.0.conv.weight":
        return "backbone.conv1.weight"
    if found := re.fullmatch(r"blocks\.0\.norm\.(\w+)", key):
        return f"backbone.bn1.{found.group(1)}"
    if found := re.fullmatch(rf"blocks\.{head}\.proj\.(weight|bias)", key):
        return f"head.fc.{found.group(1)}"
    found = re.fullmatch(r"blocks\.(\d+)\.res_blocks\.(\d+)\.(.+)", key)
    if not found or int(found.group(1)) not in stages:
        return None
    where, rest = f"backbone.{stages[int(found.group(1))]}.{found.group(2)}", found.group(3)
    if rest == "branch1_conv.weight":
        return f"{where}.downsample.0.weight"
    if part := re.fullmatch(r"branch1_norm\.(\w+)", rest):
        return f"{where}.downsample.1.{part.group(1)}"
    if part := re.fullmatch(r"branch2\.conv_([abc])\.weight", rest):
        return f"{where}.conv{BRANCH[part.group(1)]}.weight"
    if part := re.fullmatch(r"branch2\.norm_([abc])\.(\w+)", rest):
        return f"{where}.bn{BRANCH[part.group(1)]}.{part.group(2)}"
    return None


@CONVERTERS.register("pytorchvideo")
def convert_pytorchvideo(checkpoint: Any, file_name: str, arch: Optional[str] = None,
                         nonlocal_mode: Optional[str] = None) -> Conversion:
    """A pytorchvideo ResNet checkpoint -> our state dict and config."""
    if nonlocal_mode is not None:
        raise UserError("--nonlocal-mode: pytorchvideo ResNets have no non-local blocks")
    state = take_state_dict(checkpoint, file_name)
    if "blocks.0.conv.weight" not in state:
        raise UserError(f"{file_name} is not a pytorchvideo ResNet (no blocks.0.conv.weight)")
    stages = _stages(state)
    head = max(stages) + 1
    blocks: Dict[str, Dict[int, Any]] = defaultdict(dict)
    for key, value in state.items():
        if found := re.fullmatch(r"blocks\.(\d+)\.res_blocks\.(\d+)\.branch2\.conv_a\.weight", key):
            blocks[stages[int(found.group(1))]][int(found.group(2))] = value
    counts = tuple(len(blocks[f"res{s}"]) for s in range(2, 6))
    bottleneck = any(k.endswith("branch2.conv_c.weight") for k in state)
    depth = resnet_depth(counts, bottleneck, file_name)
    inflate = [[int(blocks[f"res{s}"][j].shape[2] > 1) for j in sorted(blocks[f"res{s}"])] for s in range(2, 6)]
    conv1 = state["blocks.0.conv.weight"]
    slow = "slow" in file_name.lower()
    three_d = conv1.shape[2] > 1 or any(any(flags) for flags in inflate)
    ours, unused = {}, []
    for key, value in state.items():
        name = _rename(key, stages, head)
        if name is None:
            unused.append(key)
        else:
            ours[name] = value
    conversion = Conversion(state=ours, unused=unused)
    put = conversion.put
    put("model.arch", arch or ("i3d" if three_d else "c2d"),
        "--arch" if arch else f"the weights ({'some' if three_d else 'no'} temporal kernels)")
    put("model.depth", depth, f"the weights (blocks {list(counts)})")
    put("model.width", conv1.shape[0] / 64, f"the weights (conv1 has {conv1.shape[0]} channels)")
    if conversion.settings["model"]["arch"] == "i3d":
        put("model.inflate", inflate, "the weights (temporal kernels)")
    put("model.temporal", {"conv1_kernel": int(conv1.shape[2]), "conv1_stride": 1, "pool1_stride": 1},
        "pytorchvideo's create_resnet (stem without temporal stride)")
    conversion.cite("model.temporal.conv1_kernel", "the weights (conv1)")
    put("model.temporal.res2_pool_stride", 1 if slow else 2,
        "the file name ('slow': no pool after res2)" if slow else "the file name (no 'slow': I3D/C2D pool time after res2)")
    put("model.temporal.res2_pool_kernel", 1 if slow else 2, conversion.sources["model.temporal.res2_pool_stride"])
    put("model.attention", [], "the weights (pytorchvideo ResNets have no attention blocks)")
    put("model.iaa.enabled", False, "the weights (a linear classifier)")
    put("model.num_classes", int(state[f"blocks.{head}.proj.weight"].shape[0]), f"the weights (blocks.{head}.proj)")
    put("model.dropout", 0.5, "pytorchvideo's hub models")
    published = "pytorchvideo's Kinetics recipe"
    put("data.transforms", {"mean": MEAN, "std": STD, "test_scale": 256, "crop_size": 256, "train_scale": [256, 320]},
        published)
    put("data.sampling", {"mode": "dense", "num_frames": 8, "stride": 8}, published)
    put("test", {"clips": 10, "crops": 3}, published)
    return conversion
