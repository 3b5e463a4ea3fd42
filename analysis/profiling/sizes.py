"""Params and FLOPs of model configs at Kinetics input, beside mmaction2's published sizes (`run.py sizes`).

FLOPs are counted by torch.utils.flop_counter on shape-only tensors (FakeTensorMode; attention in its
matmul form) and reported as GMACs (one multiply-add = 1), the unit mmaction2's "GFLOPs" column uses;
torch's count (multiply and add separately) is twice that. Dense models take frames x size x size;
TSN takes `segments` frames (one per segment). mmaction2's I3D numbers match our count at 32x256x256
(their 3-crop test size), so the gap to them is computed at `--published-size`.
"""
from __future__ import annotations

from typing import Dict, List, Mapping, Sequence, Tuple

import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from models.build import build_model
from models.config import ModelConfig

# mmaction2 model zoo (Kinetics-400 heads): (params M, GFLOPs as they count them = GMACs)
PUBLISHED: Dict[str, Tuple[float, float | None]] = {
    "tsn_r50": (24.3, None),
    "i3d_r50": (28.0, 43.5),
    "i3d_r50_nl5": (35.4, 59.3),
}


def forward_macs(model: nn.Module, clip_shape: Sequence[int]) -> int:
    """Multiply-adds of one forward of a clip of `clip_shape`, counted without running the kernels."""
    with FakeTensorMode(allow_non_fake_inputs=True), torch.no_grad(), sdpa_kernel(SDPBackend.MATH):
        with FlopCounterMode(display=False) as counter:
            model.eval()(torch.empty(*clip_shape))
    return int(counter.get_total_flops()) // 2


def size_rows(model_cfgs: Mapping[str, ModelConfig], classes: int, frames: int, size: int, published_size: int,
              segments: int) -> List[dict]:
    """One row per named model config: params, GMACs, and the published numbers where mmaction2 lists them."""
    rows = []
    for name, model_cfg in model_cfgs.items():
        model = build_model(model_cfg, classes)
        clip = (1, 3, segments if model_cfg.arch == "tsn" else frames, size, size)
        published = PUBLISHED.get(name, (None, None))
        rows.append({"config": name, "input": "x".join(map(str, clip[2:])),
                     "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
                     "gmacs": forward_macs(model, clip) / 1e9,
                     "gmacs_published_size": forward_macs(model, clip[:3] + (published_size,) * 2) / 1e9,
                     "published_params_m": published[0], "published_gmacs": published[1]})
    return rows


def _gap(ours: float, theirs: float | None) -> str:
    return "" if theirs is None else f"{100 * (ours - theirs) / theirs:+.1f}%"


def markdown(rows: Sequence[dict], published_size: int) -> str:
    lines = ["| config | input | params (M) | mmaction2 params (M) | gap | GMACs | GFLOPs (2 x MACs) "
             f"| GMACs at {published_size}x{published_size} | mmaction2 GFLOPs (= MACs) | gap |",
             "|" + "---|" * 10]
    for r in rows:
        theirs_p, theirs_f = r["published_params_m"], r["published_gmacs"]
        lines.append(f"| {r['config']} | {r['input']} | {r['params_m']:.2f} | {theirs_p or ''} | "
                     f"{_gap(r['params_m'], theirs_p)} | {r['gmacs']:.1f} | {2 * r['gmacs']:.1f} | "
                     f"{r['gmacs_published_size']:.1f} | {theirs_f or ''} | "
                     f"{_gap(r['gmacs_published_size'], theirs_f)} |")
    return "\n".join(lines)
