"""What the attention blocks' functional cores keep for backward, for the analytic memory model.

Their convs, pools and norms are submodules that the standard rules in `analysis/memory_model.py`
already cover; these rules add the tensors built between them: token matrices, the Nq x Nk affinity
(reference path) or the fused kernel's outputs, for each mode and implementation of models/attention.
"""
from __future__ import annotations

from typing import Dict, Iterable, List

import torch

from analysis.memory_model import Kept, ModuleCall, ShapeTrace, fresh, kept, save_rule
from models.attention.non_local import SOFTMAX_MODES, NonLocalBlock


def _nonlocal_shapes(block: NonLocalBlock, call: ModuleCall, trace: ShapeTrace) -> Dict[str, int]:
    """Sizes of the block's token matrices: positions (per batch x group) and widths of q, k, v."""
    x = call.inputs[0]
    batch, channels = x.shape[:2]
    values = trace.last_call(block.pool).output  # pooled g(x): the key grid and the value width
    rows = batch * block.groups
    return {"rows": rows, "queries": x[0, 0].numel() // block.groups, "keys": values[0, 0].numel() // block.groups,
            "query_width": channels if block.theta is None else block.theta.out_channels,
            "value_width": values.shape[1]}


def _tokens(call: ModuleCall, s: Dict[str, int], dtype: torch.dtype) -> List[Kept]:
    """q (rows, Nq, Cq), k (rows, Nk, Cq), v (rows, Nk, Cv): the copies `to_tokens` makes."""
    return [fresh(call, "q", s["rows"] * s["queries"] * s["query_width"], dtype),
            fresh(call, "k", s["rows"] * s["keys"] * s["query_width"], dtype),
            fresh(call, "v", s["rows"] * s["keys"] * s["value_width"], dtype)]


def _reference(call: ModuleCall, s: Dict[str, int], mode: str, dtype: torch.dtype) -> List[Kept]:
    """The matmuls keep q, k, v; the affinity is kept once (softmax output or f / N), twice for
    concatenation (its ReLU output, then f / N)."""
    affinity = s["rows"] * s["queries"] * s["keys"]
    matrices = ["relu", "normalized"] if mode == "concatenation" else ["normalized"]
    return _tokens(call, s, dtype) + [fresh(call, name, affinity, dtype, kind="affinity") for name in matrices]


def _fused(call: ModuleCall, trace: ShapeTrace, s: Dict[str, int], mode: str, dtype: torch.dtype) -> List[Kept]:
    rows, nq, nk, cq, cv = s["rows"], s["queries"], s["keys"], s["query_width"], s["value_width"]
    if mode in SOFTMAX_MODES:
        # CPU flash kernel: zero-padded q, k, v, the log-sum-exp, and its output, which the output
        # conv keeps too (it reads a view of it)
        width = max(cq, cv)
        sizes = {"q": nq * width, "k": nk * width, "v": nk * width, "lse": nq}
        output = kept(trace.last_call(call.module.out).inputs[0])
        return [fresh(call, name, rows * size, dtype) for name, size in sizes.items()] + [output]
    if mode == "dot_product":  # theta (phi^T g) / N: q, k, v and the small Cq x Cv product
        return _tokens(call, s, dtype) + [fresh(call, "kv", rows * cq * cv, dtype)]
    # concatenation by sorted prefix sums: the matmuls with w keep q and k, gather keeps its source
    # and index, the products keep both factors
    sizes = {"order": (rows * nk, torch.int64), "b_sorted": (rows * nk, dtype), "v_sorted": (rows * nk * cv, dtype),
             "prefix_v": (rows * (nk + 1) * cv, dtype), "prefix_bv": (rows * (nk + 1) * cv, dtype),
             "count": (rows * nq, torch.int64), "a": (rows * nq, dtype), "gathered": (rows * nq * cv, dtype)}
    return _tokens(call, s, dtype) + [fresh(call, name, numel, kind) for name, (numel, kind) in sizes.items()]


@save_rule(NonLocalBlock)
def _nonlocal_core(call: ModuleCall, trace: ShapeTrace) -> Iterable[Kept]:
    block: NonLocalBlock = call.module
    shapes = _nonlocal_shapes(block, call, trace)
    dtype = call.inputs[0].dtype
    if block.implementation == "reference":
        return _reference(call, shapes, block.mode, dtype)
    return _fused(call, trace, shapes, block.mode, dtype)

