"""mmaction2 1.x recognizers (ResNet3d I3D, C2D, ResNet TSN, with mmcv non-local blocks) into our model.

Read from the weights: 2D or 3D kernels, depth and block type, conv1's temporal kernel, every block's
inflation, where non-local blocks sit, their width reduction, subsampling and whether they are Gaussian
(no theta/phi) or concatenation (a projection). What the weights cannot show comes from `hints`, in this
order: the config text mmengine stores in the checkpoint's `meta`, the model-zoo file name (it is the
config's name, e.g. `...-r50-nl-dot-product_8xb8-32x2x1-...`), the caller's explicit choices, and
last mmaction2's published configs; each is reported in `notes`:
  - C2D against TSN (both 2D ResNets with a linear head), embedded Gaussian against dot product;
  - the temporal strides of conv1 and pool1 (2 and 2, or 1 and 1 in the `heavy` I3D);
  - `use_scale` of the non-local blocks (False in every mmaction2 config);
  - frames and views of the test pipeline (`CLIPxINTERVALxN` in the name).
Their layer differences, made settings of ours: pool1 has temporal kernel 1 and the pool after res2
kernel 2 (ours default 2s-1), C2D's stem pool has no spatial padding, and a non-local block's output
conv feeds a BN (or, without `norm_cfg`, has a bias, loaded as an identity BN with that bias).
Input normalisation is mean 123.675/116.28/103.53, std 58.395/57.12/57.375 on 0..255.
"""
from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple

import torch

from errors import UserError
from models.converters.common import CONVERTERS, Conversion, resnet_depth, take_state_dict

MEAN = (123.675, 116.28, 103.53)
STD = (58.395, 57.12, 57.375)
BN_EPS = 1e-5
ARCHS = ("i3d", "c2d", "tsn")
NONLOCAL_MODES = ("gaussian", "embedded_gaussian", "dot_product", "concatenation")

# (regex on the backbone key without `backbone.`, our key template); \1.. are the groups
BLOCK = r"layer(\d)\.(\d+)"
RULES: List[Tuple[str, str]] = [
    (r"conv1\.conv\.weight", "backbone.conv1.weight"),
    (r"conv1\.bn\.(\w+)", r"backbone.bn1.\1"),
    (BLOCK + r"\.conv(\d)\.conv\.weight", r"backbone.res{1}.\2.conv\3.weight"),
    (BLOCK + r"\.conv(\d)\.bn\.(\w+)", r"backbone.res{1}.\2.bn\3.\4"),
    (BLOCK + r"\.downsample\.conv\.weight", r"backbone.res{1}.\2.downsample.0.weight"),
    (BLOCK + r"\.downsample\.bn\.(\w+)", r"backbone.res{1}.\2.downsample.1.\3"),
    (BLOCK + r"\.non_local_block\.(g|theta|phi)(?:\.0)?\.conv\.(weight|bias)", r"backbone.res{1}.\2.attention.nonlocal.\3.\4"),
    (BLOCK + r"\.non_local_block\.conv_out\.conv\.weight", r"backbone.res{1}.\2.attention.nonlocal.out.weight"),
    (BLOCK + r"\.non_local_block\.conv_out\.bn\.(\w+)", r"backbone.res{1}.\2.attention.nonlocal.bn.\3"),
    (BLOCK + r"\.non_local_block\.concat_project\.conv\.weight", r"backbone.res{1}.\2.attention.nonlocal.concat_weight"),
]
HEAD_RULES = [(r"fc_cls\.(weight|bias)", r"head.fc.\1")]
NO_NORM_BIAS = re.compile(BLOCK + r"\.non_local_block\.conv_out\.conv\.bias")


@dataclass
class Hints:
    """Settings the weights cannot show, gathered from the checkpoint's meta and file name."""

    arch: Optional[str] = None  # i3d | c2d | tsn
    nonlocal_mode: Optional[str] = None
    use_scale: Optional[bool] = None
    conv1_stride: Optional[int] = None
    pool1_stride: Optional[int] = None
    clip: Optional[Tuple[int, int, int]] = None  # clip_len x frame_interval x num_clips
    source: Dict[str, str] = field(default_factory=dict)  # setting -> where it was read

    @classmethod
    def read(cls, meta: Any, file_name: str) -> "Hints":
        hints = cls()
        text = meta.get("cfg") if isinstance(meta, Mapping) else None
        if isinstance(text, str):
            hints._from_config_text(text)
        hints._from_file_name(file_name)
        return hints

    def _set(self, name: str, value: Any, where: str) -> None:
        if getattr(self, name) is None and value is not None:
            setattr(self, name, value)
            self.source[name] = where

    def _from_config_text(self, text: str) -> None:
        where = "the checkpoint's stored config"
        backbone = _section(text, "backbone")
        kind = re.search(r"type\s*=\s*'(ResNet3d|C2D|ResNet)'", backbone)
        self._set("arch", {"ResNet3d": "i3d", "C2D": "c2d", "ResNet": "tsn"}[kind.group(1)] if kind else None, where)
        non_local = _section(backbone, "non_local_cfg")
        for name, pattern, part, convert in (
                ("nonlocal_mode", r"mode\s*=\s*'(\w+)'", non_local, str),
                ("use_scale", r"use_scale\s*=\s*(True|False)", non_local, lambda v: v == "True"),
                ("conv1_stride", r"conv1_stride_t\s*=\s*(\d+)", backbone, int),
                ("pool1_stride", r"pool1_stride_t\s*=\s*(\d+)", backbone, int)):
            found = re.search(pattern, part)
            self._set(name, convert(found.group(1)) if found else None, where)

    def _from_file_name(self, name: str) -> None:
        where = f"the file name {name}"
        name = name.lower()
        arch = "c2d" if name.startswith("c2d") and "nopool" not in name else \
            "tsn" if name.startswith(("tsn", "c2d")) else "i3d" if name.startswith("i3d") else None
        self._set("arch", arch, where)
        mode = next((m for m in ("dot-product", "embedded-gaussian", "concatenation", "gaussian")
                     if f"nl-{m}" in name), None)
        self._set("nonlocal_mode", mode.replace("-", "_") if mode else None, where)
        if "heavy" in name:
            self._set("conv1_stride", 1, where)
            self._set("pool1_stride", 1, where)
        clip = re.search(r"(\d+)x(\d+)x(\d+)", name.replace("8xb", "_"))
        self._set("clip", tuple(int(v) for v in clip.groups()) if clip else None, where)


def _section(text: str, name: str) -> str:
    """The text of `name=dict(...)` in a config's text (brackets balanced), or '' when absent."""
    found = re.search(rf"\b{name}\s*=\s*dict\(", text)
    if not found:
        return ""
    depth, start = 1, found.end()
    for end in range(start, len(text)):
        depth += {"(": 1, ")": -1}.get(text[end], 0)
        if depth == 0:
            return text[start:end]
    return text[start:]


def _split(state: Mapping[str, torch.Tensor], source: str) -> Tuple[Dict[str, torch.Tensor], Dict[str, torch.Tensor], List[str]]:
    """(backbone keys, head keys) without their prefixes; data_preprocessor buffers dropped, others left over."""
    backbone, head, other = {}, {}, []
    for key, value in state.items():
        if key.startswith("backbone."):
            backbone[key[len("backbone."):]] = value
        elif key.startswith("cls_head."):
            head[key[len("cls_head."):]] = value
        elif not key.startswith("data_preprocessor."):
            other.append(key)
    if "conv1.conv.weight" not in backbone or "fc_cls.weight" not in head:
        raise UserError(f"{source} is not an mmaction2 ResNet recognizer (no backbone.conv1.conv.weight "
                        "or cls_head.fc_cls.weight)")
    return backbone, head, other


def _blocks(backbone: Mapping[str, torch.Tensor]) -> Dict[int, Dict[int, Dict[str, torch.Tensor]]]:
    """layer -> block -> {rest of key: tensor}."""
    layers: Dict[int, Dict[int, Dict[str, torch.Tensor]]] = defaultdict(lambda: defaultdict(dict))
    for key, value in backbone.items():
        found = re.match(BLOCK + r"\.(.+)", key)
        if found:
            layers[int(found.group(1))][int(found.group(2))][found.group(3)] = value
    return layers


def _depth(layers, source: str) -> Tuple[int, bool]:
    bottleneck = "conv3.conv.weight" in layers[1][0]
    return resnet_depth(tuple(len(layers[i]) for i in range(1, 5)), bottleneck, source), bottleneck


def _nonlocal(layers, hints: Hints, notes: List[str], source: str) -> List[Dict[str, Any]]:
    """The `model.attention` entry of the non-local blocks, from their keys (empty when there are none)."""
    placed = {stage + 1: sorted(j for j, keys in blocks.items() if any(k.startswith("non_local_block.") for k in keys))
              for stage, blocks in layers.items()}
    placed = {stage: blocks for stage, blocks in placed.items() if blocks}
    if not placed:
        return []
    options = set()
    for stage, blocks in placed.items():
        for j in blocks:
            keys = {k[len("non_local_block."):]: v for k, v in layers[stage - 1][j].items()
                    if k.startswith("non_local_block.")}
            g = keys.get("g.0.conv.weight", keys.get("g.conv.weight"))
            shape = "gaussian" if "theta.conv.weight" not in keys else \
                "concatenation" if "concat_project.conv.weight" in keys else "embedded"
            options.add((shape, "g.0.conv.weight" in keys, g.shape[1] // g.shape[0]))
    if len(options) > 1:
        raise UserError(f"{source}: non-local blocks of different kinds {sorted(options)}; convert with --config")
    shape, subsample, reduction = options.pop()
    if shape == "embedded":
        mode = hints.nonlocal_mode
        if mode not in ("embedded_gaussian", "dot_product"):
            raise UserError(f"{source}: its non-local blocks are embedded Gaussian or dot product, which the "
                            "weights cannot tell apart and neither the file name nor its meta says; "
                            "pass --nonlocal-mode embedded_gaussian|dot_product")
        notes.append(f"non-local mode {mode}: from {hints.source.get('nonlocal_mode', 'the command line')}")
    else:
        mode = shape
        notes.append(f"non-local mode {mode}: from the weights")
    use_scale = hints.use_scale if hints.use_scale is not None else False
    notes.append(f"non-local use_scale={use_scale}: from "
                 f"{hints.source.get('use_scale', 'mmaction2 configs (all published ones use False)')}")
    stages = sorted(placed)
    notes.append("non-local blocks at " + ", ".join(f"res{s}.{j}" for s in stages for j in placed[s])
                 + f" (reduction {reduction}, subsample {subsample}): from the keys")
    # mmcv applies the 1/sqrt(width) scale to embedded Gaussian only
    return [{"type": "nonlocal", "stages": stages, "blocks": [placed[s] for s in stages], "mode": mode,
             "reduction": reduction, "subsample": subsample, "scale": bool(use_scale) and mode == "embedded_gaussian"}]


def _rename(key: str, rules: List[Tuple[str, str]]) -> Optional[str]:
    for pattern, template in rules:
        found = re.fullmatch(pattern, key)
        if found:
            if "{1}" in template:  # mmaction2 layer N is our res(N+1)
                template = template.replace("{1}", str(int(found.group(1)) + 1))
            return found.expand(template)
    return None


def _map_tensors(backbone, head, two_d: bool) -> Tuple[Dict[str, torch.Tensor], List[str]]:
    state, unused = {}, []
    for part, rules, prefix in ((backbone, RULES, "backbone."), (head, HEAD_RULES, "cls_head.")):
        for key, value in part.items():
            no_norm = NO_NORM_BIAS.fullmatch(key) if prefix == "backbone." else None
            if no_norm:  # conv_out without BN: its bias becomes an identity BN with that bias
                bn = f"backbone.res{int(no_norm.group(1)) + 1}.{no_norm.group(2)}.attention.nonlocal.bn."
                state.update({bn + "weight": torch.ones_like(value), bn + "bias": value.clone(),
                              bn + "running_mean": torch.zeros_like(value),
                              bn + "running_var": torch.full_like(value, 1 - BN_EPS),
                              bn + "num_batches_tracked": torch.tensor(0)})
                continue
            ours = _rename(key, rules)
            if ours is None:
                unused.append(prefix + key)
                continue
            if ours.endswith("concat_weight"):
                value = value.flatten()
            elif two_d and value.dim() == 4:  # a 2D kernel is a 1 x kh x kw 3D kernel
                value = value.unsqueeze(2)
            state[ours] = value.clone()
    return state, unused


def _data_settings(arch: str, hints: Hints, notes: List[str]) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """`data.*` and `test.*` of mmaction2's test pipeline for this architecture."""
    default_clip = {"i3d": (32, 2, 1), "c2d": (8, 8, 1), "tsn": (1, 1, 8)}[arch]
    clip_len, interval, num_clips = hints.clip or default_clip
    notes.append(f"sampling {clip_len}x{interval}x{num_clips}: from "
                 f"{hints.source.get('clip', 'the mmaction2 config of this architecture')}")
    crop = 256 if arch == "i3d" else 224  # their I3D tests on three 256 crops, the others on 224
    data = {"transforms": {"mean": [m / 255 for m in MEAN], "std": [s / 255 for s in STD], "test_scale": 256,
                           "crop_size": crop, "train_scale": [256, 320]}}
    if arch == "tsn":
        data["sampling"] = {"mode": "segments", "num_segments": num_clips}
        test = {"clips": 1, "crops": 3}
    else:
        data["sampling"] = {"mode": "dense", "num_frames": clip_len, "stride": interval}
        test = {"clips": 10, "crops": 3}
    notes.append(f"normalisation mean {list(MEAN)}, std {list(STD)} on 0..255; test views "
                 f"{test['clips']} clips x {test['crops']} crops of {crop} from short side 256")
    return data, test


@CONVERTERS.register("mmaction2")
def convert_mmaction2(checkpoint: Any, file_name: str, arch: Optional[str] = None,
                      nonlocal_mode: Optional[str] = None) -> Conversion:
    """An mmaction2 checkpoint (the loaded file) -> our state dict and config; `arch` and `nonlocal_mode`
    settle what neither the weights, the meta nor the file name tell."""
    state = take_state_dict(checkpoint, file_name)
    hints = Hints.read(checkpoint.get("meta") if isinstance(checkpoint, dict) else None, file_name)
    for name, value, choices in (("arch", arch, ARCHS), ("nonlocal_mode", nonlocal_mode, NONLOCAL_MODES)):
        if value is not None:
            if value not in choices:
                raise UserError(f"--{name.replace('_', '-')} {value}: choose from {', '.join(choices)}")
            setattr(hints, name, value)
            hints.source[name] = "the command line"
    backbone, head, other = _split(state, file_name)
    notes: List[str] = []
    conv1 = backbone["conv1.conv.weight"]
    layers = _blocks(backbone)
    depth, bottleneck = _depth(layers, file_name)
    key = "conv1.conv.weight"
    if conv1.dim() == 4:
        arch = hints.arch if hints.arch in ("c2d", "tsn") else "tsn"
        notes.append(f"architecture {arch}: 2D kernels; C2D or TSN from {hints.source.get('arch', 'nothing (TSN assumed)')}")
        model: Dict[str, Any] = {"arch": arch, "depth": depth}
        if arch == "c2d":  # mmaction2's C2D: 2D stem without temporal stride, unpadded pool, kernel-2 pool after res2
            model["temporal"] = {"conv1_stride": 1, "pool1_stride": 1, "res2_pool_stride": 2, "res2_pool_kernel": 2}
            model["stem_pool_padding"] = 0
    else:
        arch = "i3d"
        inflate = [[int(layers[i][j][key].shape[2] > 1) for j in sorted(layers[i])] for i in range(1, 5)]
        conv1_stride = hints.conv1_stride if hints.conv1_stride is not None else 2
        pool1_stride = hints.pool1_stride if hints.pool1_stride is not None else 2
        model = {"arch": "i3d", "depth": depth, "inflate": inflate,
                 "temporal": {"conv1_kernel": int(conv1.shape[2]), "conv1_stride": conv1_stride,
                              "pool1_stride": pool1_stride, "pool1_kernel": 1, "res2_pool_stride": 2,
                              "res2_pool_kernel": 2}}
        notes.append(f"architecture i3d: 3D kernels, conv1 {conv1.shape[2]}x7x7, inflation {inflate}: from the weights")
        notes.append(f"temporal strides conv1 {conv1_stride}, pool1 {pool1_stride}: from "
                     f"{hints.source.get('conv1_stride', 'the I3D config (i3d_r50.py)')}")
    notes.insert(0, f"depth {depth} ({'bottleneck' if bottleneck else 'basic'} blocks {[len(layers[i]) for i in range(1, 5)]}): from the keys")
    model["attention"] = _nonlocal(layers, hints, notes, file_name)
    if model["attention"] and arch == "tsn":
        raise UserError(f"{file_name}: a TSN with non-local blocks is not an mmaction2 model; convert with --arch c2d")
    model["dropout"] = 0.5 if arch != "tsn" else 0.4
    ours, unused = _map_tensors(backbone, head, two_d=conv1.dim() == 4)
    data, test = _data_settings(arch, hints, notes)
    num_classes = int(head["fc_cls.weight"].shape[0])
    notes.append(f"{num_classes} classes: from cls_head.fc_cls")
    return Conversion(state=ours, model=model, data=data, test=test, notes=notes, unused=other + unused)
