"""What the attention blocks' functional cores keep for backward, for the analytic memory model.

Their convs, linears, pools and norms are submodules that the standard rules in
`analysis/profiling/memory_model.py` already cover; these rules add the tensors computed between them (token
matrices, attention matrices, gates, fused-kernel outputs) from the block's input shape and options.
"""
from __future__ import annotations

import math
from typing import Dict, Iterable, List

import torch

from analysis.profiling.memory_model import Kept, ModuleCall, ShapeTrace, fresh, kept, save_rule
from models.attention.bam import BAM
from models.attention.cbam import CBAM
from models.attention.danet import ChannelAttention, PositionAttention
from models.attention.fla import AXES, FullyAttentional
from models.attention.non_local import SOFTMAX_MODES, NonLocalBlock
from models.attention.se import SqueezeExcitation
from models.iaa import PyramidAttentionHead


def _own(call: ModuleCall, dtype: torch.dtype, kind: str = "activation", **numels: int) -> List[Kept]:
    """Tensors of the block's own making, by name and number of elements."""
    return [fresh(call, name, numel, dtype, kind) for name, numel in numels.items()]


def _flash(call: ModuleCall, rows: int, queries: int, keys: int, width: int, dtype: torch.dtype) -> List[Kept]:
    """The CPU flash kernel keeps q, k, v (zero-padded to one width) and the log-sum-exp; its output,
    also kept, is counted by the caller (it may be the storage a later layer keeps)."""
    return _own(call, dtype, q=rows * queries * width, k=rows * keys * width, v=rows * keys * width,
                lse=rows * queries)


def _nonlocal_shapes(block: NonLocalBlock, call: ModuleCall, trace: ShapeTrace) -> Dict[str, int]:
    """Sizes of the block's token matrices: positions (per batch x group) and widths of q, k, v."""
    x = call.inputs[0]
    values = trace.last_call(block.pool).output  # pooled g(x): the key grid and the value width
    return {"rows": x.shape[0] * block.groups, "nq": x[0, 0].numel() // block.groups,
            "nk": values[0, 0].numel() // block.groups,
            "cq": x.shape[1] if block.theta is None else block.theta.out_channels, "cv": values.shape[1]}


@save_rule(NonLocalBlock)
def _nonlocal(call: ModuleCall, trace: ShapeTrace) -> Iterable[Kept]:
    """Reference: q, k, v and the affinity (once; twice for concatenation: its ReLU and f / N).
    Fused: the flash kernel's tensors, theta (phi^T g) / N's products, or the prefix-sum form's."""
    block: NonLocalBlock = call.module
    s = _nonlocal_shapes(block, call, trace)
    rows, nq, nk, cq, cv = s["rows"], s["nq"], s["nk"], s["cq"], s["cv"]
    dtype = call.inputs[0].dtype
    tokens = _own(call, dtype, q=rows * nq * cq, k=rows * nk * cq, v=rows * nk * cv)
    if block.implementation == "reference":
        matrices = ("relu", "normalized") if block.mode == "concatenation" else ("normalized",)
        return tokens + _own(call, dtype, "affinity", **{name: rows * nq * nk for name in matrices})
    if block.mode in SOFTMAX_MODES:  # the output conv reads a view of the kernel's output
        return _flash(call, rows, nq, nk, max(cq, cv), dtype) + [kept(trace.last_call(block.out).inputs[0])]
    if block.mode == "dot_product":
        return tokens + _own(call, dtype, kv=rows * cq * cv)
    # concatenation by sorted prefix sums: gather keeps its source and index, products both factors
    return (tokens + _own(call, torch.int64, order=rows * nk, count=rows * nq)
            + _own(call, dtype, b_sorted=rows * nk, v_sorted=rows * nk * cv, prefix_v=rows * (nk + 1) * cv,
                   prefix_bv=rows * (nk + 1) * cv, a=rows * nq, gathered=rows * nq * cv))


@save_rule(PositionAttention)
def _position_attention(call: ModuleCall, trace: ShapeTrace) -> Iterable[Kept]:
    """DANet PAM: q, k, v, the affinity and the attended values (kept by the gamma product), or the
    flash kernel's tensors and output."""
    x = call.inputs[0]
    batch, channels, positions = x.shape[0], x.shape[1], x[0, 0].numel()
    inner = call.module.query.out_channels
    if call.module.implementation == "reference":
        return (_own(call, x.dtype, q=batch * positions * inner, k=batch * positions * inner,
                     v=batch * positions * channels, attended=batch * positions * channels)
                + _own(call, x.dtype, "affinity", normalized=batch * positions * positions))
    width = max(inner, channels)
    return _flash(call, batch, positions, positions, width, x.dtype) + _own(call, x.dtype, out=batch * positions * width)


@save_rule(ChannelAttention)
def _channel_attention(call: ModuleCall, trace: ShapeTrace) -> Iterable[Kept]:
    """DANet CAM: X, the energy, its row max, the attention and the attended values."""
    x = call.inputs[0]
    batch, channels = x.shape[:2]
    return [kept(x)] + _own(call, x.dtype, energy=batch * channels**2, row_max=batch * channels,
                            attention=batch * channels**2, attended=x.numel())


@save_rule(SqueezeExcitation)
def _squeeze_excitation(call: ModuleCall, trace: ShapeTrace) -> Iterable[Kept]:
    """x and the sigmoid gate, which the gating product keeps."""
    x = call.inputs[0]
    return [kept(x)] + _own(call, x.dtype, gate=x.shape[0] * x.shape[1])


@save_rule(CBAM)
def _cbam(call: ModuleCall, trace: ShapeTrace) -> Iterable[Kept]:
    """x and its channel max (amax keeps both), the channel gate, the gated x, its max over channels
    and the spatial gate."""
    x = call.inputs[0]
    positions = x[0, 0].numel() * x.shape[0]
    pooled_max = trace.last_call(call.module.mlp[0]).inputs[0]  # the shared MLP sees the max last
    return [kept(x), kept(pooled_max)] + _own(call, x.dtype, gate=x.shape[0] * x.shape[1], gated=x.numel(),
                                              channel_max=positions, spatial_gate=positions)


@save_rule(BAM)
def _bam(call: ModuleCall, trace: ShapeTrace) -> Iterable[Kept]:
    """x and the full-size sigmoid of channel + spatial attention."""
    x = call.inputs[0]
    return [kept(x)] + _own(call, x.dtype, gate=x.numel())


@save_rule(FullyAttentional)
def _fully_attentional(call: ModuleCall, trace: ShapeTrace) -> Iterable[Kept]:
    """Per axis: the batched matmuls keep contiguous copies of the lines (twice) and of the broadcast
    context, and the C x C relation per line; then the sum the gamma product keeps."""
    x = call.inputs[0]
    batch, channels = x.shape[:2]
    items = _own(call, x.dtype, attended=x.numel())
    for axis in AXES:
        lines = math.prod(x.shape[a] for a in AXES if a != axis)
        items += _own(call, x.dtype, **{f"context{axis}": batch * lines * x.shape[axis] * channels,
                                        f"lines{axis}": x.numel(), f"lines_again{axis}": x.numel(),
                                        f"relation{axis}": batch * lines * channels**2})
    return items


@save_rule(PyramidAttentionHead)
def _pyramid_head(call: ModuleCall, trace: ShapeTrace) -> Iterable[Kept]:
    """The positions X (B, N, dim), centred X and the softmax maps (B, N, K) of the attention; the
    PCA loss's centred X (a contiguous copy), scores X A, residual and norm, and when the loss trains X
    too, the centred X itself (X is a transposed view, so the copy is another storage) and two norms."""
    head: PyramidAttentionHead = call.module
    projected = [trace.last_call(head.project[name]).output for name in head.stages]
    batch, dim = projected[0].shape[:2]
    positions = sum(p[0, 0].numel() for p in projected)
    features, maps = batch * positions * dim, batch * positions * head.maps.shape[1]
    dtype = projected[0].dtype
    items = _own(call, dtype, positions=features, centred=features, attention=maps, pca_centred=features,
                 pca_scores=maps, pca_residual=features, pca_norm=batch)
    if not head.detach_pca:
        items += _own(call, dtype, pca_centred_view=features, pca_residual_norm=batch, pca_norm_unclamped=batch)
    return items
