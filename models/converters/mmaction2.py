"""mmaction2 1.x recognizers (ResNet3d I3D, C2D, ResNet TSN, with mmcv non-local blocks) into our model.

Read from the weights: 2D or 3D kernels, depth and block type, conv1's temporal kernel, every block's
inflation, where non-local blocks sit, their width reduction, subsampling and whether they are Gaussian
(no theta/phi) or concatenation (a projection). What the weights cannot show comes from `hints`, in this
order: the config text mmengine stores in the checkpoint's `meta`, the model-zoo file name (it is the
config's name, e.g. `...-r50-nl-dot-product_8xb8-32x2x1-...`), the caller's flags (which may not contradict
the first two), and last mmaction2's published configs; `Conversion.sources` names which, per key:
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
from models.converters.config_text import read_config_text

MEAN = (123.675, 116.28, 103.53)
STD = (58.395, 57.12, 57.375)
BN_EPS = 1e-5
ARCHS = ("i3d", "c2d", "tsn")
NONLOCAL_MODES = ("gaussian", "embedded_gaussian", "dot_product", "concatenation")

# One table of key templates, mmaction2's against ours, read both ways (`rename`): {L} is mmaction2's
# layer index and {R} = L + 1 our stage; {sub} is the `.0` mmcv puts into g and phi when it subsamples.
PARTS = {"L": r"\d+", "R": r"\d+", "j": r"\d+", "c": r"\d", "p": r"\w+", "w": r"weight|bias", "gp": r"g|phi",
         "sub": r"(?:\.0)?"}
THEIR_BLOCK, OUR_BLOCK = "backbone.layer{L}.{j}", "backbone.res{R}.{j}"
THEIR_NL, OUR_NL = THEIR_BLOCK + ".non_local_block", OUR_BLOCK + ".attention.nonlocal"
KEYS: List[Tuple[str, str]] = [
    ("backbone.conv1.conv.weight", "backbone.conv1.weight"),
    ("backbone.conv1.bn.{p}", "backbone.bn1.{p}"),
    (THEIR_BLOCK + ".conv{c}.conv.weight", OUR_BLOCK + ".conv{c}.weight"),
    (THEIR_BLOCK + ".conv{c}.bn.{p}", OUR_BLOCK + ".bn{c}.{p}"),
    (THEIR_BLOCK + ".downsample.conv.weight", OUR_BLOCK + ".downsample.0.weight"),
    (THEIR_BLOCK + ".downsample.bn.{p}", OUR_BLOCK + ".downsample.1.{p}"),
    (THEIR_NL + ".theta.conv.{w}", OUR_NL + ".theta.{w}"),
    (THEIR_NL + ".{gp}{sub}.conv.{w}", OUR_NL + ".{gp}.{w}"),
    (THEIR_NL + ".conv_out.conv.weight", OUR_NL + ".out.weight"),
    (THEIR_NL + ".conv_out.bn.{p}", OUR_NL + ".bn.{p}"),
    (THEIR_NL + ".concat_project.conv.weight", OUR_NL + ".concat_weight"),
    ("cls_head.fc_cls.{w}", "head.fc.{w}"),
]
NO_NORM_BIAS = re.compile(r"backbone\.layer(\d)\.(\d+)\.non_local_block\.conv_out\.conv\.bias")


def _pattern(template: str) -> "re.Pattern[str]":
    parts = re.split(r"\{(\w+)\}", template)
    return re.compile("".join(re.escape(text) if i % 2 == 0 else f"(?P<{text}>{PARTS[text]})"
                              for i, text in enumerate(parts)))


PATTERNS = [(_pattern(theirs), _pattern(ours), theirs, ours) for theirs, ours in KEYS]


def rename(key: str, to_ours: bool, sub: str = "") -> Optional[str]:
    """An mmaction2 key as ours (`to_ours`) or ours as mmaction2's (g and phi with `sub`); None if no rule."""
    for their_pattern, our_pattern, theirs, ours in PATTERNS:
        found = (their_pattern if to_ours else our_pattern).fullmatch(key)
        if found:
            values = found.groupdict()
            if "L" in values:
                values["R"] = str(int(values["L"]) + 1)
            if "R" in values:
                values["L"] = str(int(values["R"]) - 1)
            values.setdefault("sub", sub)
            return (ours if to_ours else theirs).format(**values)
    return None


@dataclass
class Hints:
    """Settings the weights cannot show, from the checkpoint's meta, its file name and the caller's flags."""

    arch: Optional[str] = None  # i3d | c2d | tsn
    nonlocal_mode: Optional[str] = None
    use_scale: Optional[bool] = None
    conv1_stride: Optional[int] = None
    pool1_stride: Optional[int] = None
    clip: Optional[Tuple[int, int, int]] = None  # clip_len x frame_interval x num_clips
    mean: Optional[List[float]] = None  # data_preprocessor, on 0..255
    std: Optional[List[float]] = None
    source: Dict[str, str] = field(default_factory=dict)  # setting -> where it was read

    @classmethod
    def read(cls, meta: Any, file_name: str, flags: Mapping[str, Optional[str]]) -> "Hints":
        hints = cls()
        text = meta.get("cfg") if isinstance(meta, Mapping) else None
        if isinstance(text, str):
            hints._from_config(read_config_text(text, f"{file_name}: meta['cfg']"))
        hints._from_file_name(file_name)
        for name, value in flags.items():
            if value is None:
                continue
            choices = {"arch": ARCHS, "nonlocal_mode": NONLOCAL_MODES}[name]
            flag = f"--{name.replace('_', '-')}"
            if value not in choices:
                raise UserError(f"{flag} {value}: choose from {', '.join(choices)}")
            if getattr(hints, name) not in (None, value):
                raise UserError(f"{flag} {value} contradicts {hints.source[name]}, which says {getattr(hints, name)}")
            hints._set(name, value, flag)
        return hints

    def _set(self, name: str, value: Any, where: str) -> None:
        if getattr(self, name) is None and value is not None:
            setattr(self, name, value)
            self.source[name] = where

    def _from_config(self, config: Mapping[str, Any]) -> None:
        where = "the checkpoint's meta (its stored config)"
        model = config["model"]
        backbone = model.get("backbone") if isinstance(model.get("backbone"), dict) else {}
        self._set("arch", {"ResNet3d": "i3d", "C2D": "c2d", "ResNet": "tsn"}.get(backbone.get("type")), where)
        non_local = backbone.get("non_local_cfg") if isinstance(backbone.get("non_local_cfg"), dict) else {}
        self._set("nonlocal_mode", non_local.get("mode"), where)
        self._set("use_scale", non_local.get("use_scale"), where)
        self._set("conv1_stride", backbone.get("conv1_stride_t"), where)
        self._set("pool1_stride", backbone.get("pool1_stride_t"), where)
        preprocessor = model.get("data_preprocessor") if isinstance(model.get("data_preprocessor"), dict) else {}
        self._set("mean", preprocessor.get("mean"), where)
        self._set("std", preprocessor.get("std"), where)
        steps = config.get("test_pipeline") if isinstance(config.get("test_pipeline"), list) else []
        sample = next((step for step in steps if isinstance(step, dict) and step.get("type") == "SampleFrames"), None)
        if sample:
            self._set("clip", (sample.get("clip_len", 1), sample.get("frame_interval", 1), sample.get("num_clips", 1)),
                      where)

    def _from_file_name(self, name: str) -> None:
        where = "the file name"
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


def _split(state: Mapping[str, torch.Tensor], source: str) -> Tuple[Dict[str, torch.Tensor], List[str]]:
    """The backbone and head tensors under their mmaction2 keys; data_preprocessor buffers dropped, others left over."""
    ours, other = {}, []
    for key, value in state.items():
        if key.startswith(("backbone.", "cls_head.")):
            ours[key] = value
        elif not key.startswith("data_preprocessor."):
            other.append(key)
    if "backbone.conv1.conv.weight" not in ours or "cls_head.fc_cls.weight" not in ours:
        raise UserError(f"{source} is not an mmaction2 ResNet recognizer (no backbone.conv1.conv.weight "
                        "or cls_head.fc_cls.weight)")
    return ours, other


def _blocks(state: Mapping[str, torch.Tensor]) -> Dict[int, Dict[int, Dict[str, torch.Tensor]]]:
    """layer -> block -> {rest of key: tensor}."""
    layers: Dict[int, Dict[int, Dict[str, torch.Tensor]]] = defaultdict(lambda: defaultdict(dict))
    for key, value in state.items():
        found = re.match(r"backbone\.layer(\d)\.(\d+)\.(.+)", key)
        if found:
            layers[int(found.group(1))][int(found.group(2))][found.group(3)] = value
    return layers


def _nonlocal(layers, hints: Hints, conversion: Conversion, source: str) -> None:
    """The `model.attention` entry of the non-local blocks, from their keys (none when there are none)."""
    placed = {stage + 1: sorted(j for j, keys in blocks.items() if any(k.startswith("non_local_block.") for k in keys))
              for stage, blocks in layers.items()}
    placed = {stage: blocks for stage, blocks in sorted(placed.items()) if blocks}
    if not placed:
        conversion.put("model.attention", [], "the weights (no non-local keys)")
        return
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
        raise UserError(f"{source}: non-local blocks of different kinds {sorted(options)}; mmaction2 has one "
                        "non_local_cfg for all blocks")
    shape, subsample, reduction = options.pop()
    if shape == "embedded" and hints.nonlocal_mode not in ("embedded_gaussian", "dot_product"):
        raise UserError(f"{source}: its non-local blocks are embedded Gaussian or dot product, which the "
                        "weights cannot tell apart and neither the file name nor its meta says; "
                        "pass --nonlocal-mode embedded_gaussian|dot_product")
    mode = hints.nonlocal_mode if shape == "embedded" else shape
    use_scale = hints.use_scale if hints.use_scale is not None else False
    # mmcv applies the 1/sqrt(width) scale to embedded Gaussian only
    conversion.put("model.attention", [{
        "type": "nonlocal", "stages": list(placed), "blocks": list(placed.values()), "mode": mode,
        "reduction": reduction, "subsample": subsample, "scale": bool(use_scale) and mode == "embedded_gaussian"}],
        "the weights (non-local keys: where, their widths, g.0 when subsampled)")
    if shape == "embedded":
        conversion.cite("model.attention.0.mode", hints.source["nonlocal_mode"])
    else:
        conversion.cite("model.attention.0.mode", "the weights (" + ("no theta/phi" if shape == "gaussian" else "a concat_project") + ")")
    conversion.cite("model.attention.0.scale", hints.source.get(
        "use_scale", "mmaction2's published configs (all use use_scale=False)"))


def _map_tensors(state: Mapping[str, torch.Tensor], two_d: bool) -> Tuple[Dict[str, torch.Tensor], List[str]]:
    ours, unused = {}, []
    for key, value in state.items():
        no_norm = NO_NORM_BIAS.fullmatch(key)
        if no_norm:  # conv_out without BN: its bias becomes an identity BN with that bias
            bn = f"backbone.res{int(no_norm.group(1)) + 1}.{no_norm.group(2)}.attention.nonlocal.bn."
            ours.update({bn + "weight": torch.ones_like(value), bn + "bias": value.clone(),
                         bn + "running_mean": torch.zeros_like(value),
                         bn + "running_var": torch.full_like(value, 1 - BN_EPS),
                         bn + "num_batches_tracked": torch.tensor(0)})
            continue
        name = rename(key, to_ours=True)
        if name is None:
            unused.append(key)
            continue
        if name.endswith("concat_weight"):
            value = value.flatten()
        elif two_d and value.dim() == 4:  # a 2D kernel is a 1 x kh x kw 3D kernel
            value = value.unsqueeze(2)
        ours[name] = value  # the loaded file is ours: no copy
    return ours, unused


def _data_settings(arch: str, hints: Hints, conversion: Conversion) -> None:
    """`data.*` and `test.*` of mmaction2's test pipeline for this architecture."""
    published = f"mmaction2's published {arch.upper()} configs"
    clip_len, interval, num_clips = hints.clip or {"i3d": (32, 2, 1), "c2d": (8, 8, 1), "tsn": (1, 1, 8)}[arch]
    clip_source = hints.source.get("clip", published)
    for name, values in (("mean", hints.mean or MEAN), ("std", hints.std or STD)):
        conversion.put(f"data.transforms.{name}", [v / 255 for v in values],
                       f"{hints.source.get(name, published)}: {list(values)} on 0..255")
    conversion.put("data.transforms.test_scale", 256, published)
    conversion.put("data.transforms.crop_size", 256 if arch == "i3d" else 224, published)  # their I3D tests on 256 crops
    if arch == "tsn":
        conversion.put("data.sampling", {"mode": "segments", "num_segments": num_clips}, clip_source)
        conversion.put("test", {"clips": 1, "crops": 3}, published)
    else:
        conversion.put("data.sampling", {"mode": "dense", "num_frames": clip_len, "stride": interval}, clip_source)
        conversion.put("test", {"clips": 10, "crops": 3}, published)


@CONVERTERS.register("mmaction2")
def convert_mmaction2(checkpoint: Any, file_name: str, arch: Optional[str] = None,
                      nonlocal_mode: Optional[str] = None) -> Conversion:
    """An mmaction2 checkpoint (the loaded file) -> our state dict and config; `arch` and `nonlocal_mode`
    settle what neither the weights, the meta nor the file name tell."""
    state = take_state_dict(checkpoint, file_name)
    hints = Hints.read(checkpoint.get("meta") if isinstance(checkpoint, dict) else None, file_name,
                       {"arch": arch, "nonlocal_mode": nonlocal_mode})
    theirs, other = _split(state, file_name)
    conv1 = theirs["backbone.conv1.conv.weight"]
    two_d = conv1.dim() == 4
    layers = _blocks(theirs)
    bottleneck = "conv3.conv.weight" in layers[1][0]
    depth = resnet_depth(tuple(len(layers[i]) for i in range(1, 5)), bottleneck, file_name)
    ours, unused = _map_tensors(theirs, two_d)
    conversion = Conversion(state=ours, unused=other + unused)
    put = conversion.put
    if two_d:
        arch = hints.arch if hints.arch in ("c2d", "tsn") else "tsn"
        put("model.arch", arch, f"the weights (2D kernels) and {hints.source['arch']}" if hints.arch in ("c2d", "tsn")
            else "the weights (2D kernels; nothing names C2D, so TSN: pass --arch c2d for a C2D)")
        if arch == "c2d":  # mmaction2's C2D: 2D stem without temporal stride, unpadded pool, kernel-2 pool after res2
            put("model.temporal", {"conv1_stride": 1, "pool1_stride": 1, "res2_pool_stride": 2, "res2_pool_kernel": 2},
                "mmaction2's C2D backbone")
            put("model.stem_pool_padding", 0, "mmaction2's C2D backbone")
    else:
        arch = "i3d"
        put("model.arch", "i3d", "the weights (3D kernels)")
        put("model.inflate", [[int(layers[i][j]["conv1.conv.weight"].shape[2] > 1) for j in sorted(layers[i])]
                              for i in range(1, 5)], "the weights (temporal kernels)")
        published = "mmaction2's published I3D configs"
        temporal = {"conv1_kernel": (int(conv1.shape[2]), "the weights (conv1)"),
                    "conv1_stride": (2 if hints.conv1_stride is None else hints.conv1_stride,
                                     hints.source.get("conv1_stride", published)),
                    "pool1_stride": (2 if hints.pool1_stride is None else hints.pool1_stride,
                                     hints.source.get("pool1_stride", published)),
                    "pool1_kernel": (1, "mmaction2's ResNet3d (pool1 is 1x3x3)"),
                    "res2_pool_stride": (2, "mmaction2's ResNet3d (pool2 is 2x1x1)"),
                    "res2_pool_kernel": (2, "mmaction2's ResNet3d (pool2 is 2x1x1)")}
        for name, (value, source) in temporal.items():
            put(f"model.temporal.{name}", value, source)
    counts = [len(layers[i]) for i in range(1, 5)]
    put("model.depth", depth, f"the weights ({'bottleneck' if bottleneck else 'basic'} blocks {counts})")
    put("model.width", conv1.shape[0] / 64, f"the weights (conv1 has {conv1.shape[0]} channels)")
    _nonlocal(layers, hints, conversion, file_name)
    if conversion.settings["model"]["attention"] and arch != "i3d":
        raise UserError(f"{file_name}: an mmaction2 {arch.upper()} has no non-local blocks, these weights have some")
    put("model.iaa.enabled", False, "the weights (a linear classifier)")
    put("model.num_classes", int(theirs["cls_head.fc_cls.weight"].shape[0]), "the weights (cls_head.fc_cls)")
    put("model.dropout", 0.5 if arch != "tsn" else 0.4, f"mmaction2's published {arch.upper()} configs")
    _data_settings(arch, hints, conversion)
    return conversion

