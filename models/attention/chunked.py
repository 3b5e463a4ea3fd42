"""softmax(q k^T * scale) v in query chunks, for where scaled_dot_product_attention would use its math
kernel (which builds and keeps the Nq x Nk matrix).

A custom autograd function in the manner of FlashAttention: the forward walks over blocks of queries,
keeping only the output and the log-sum-exp of each row; the backward recomputes each block's
probabilities from them. So it saves q, k, v, the output and the log-sum-exp (what the flash kernels
save) and holds one block's Nq_block x Nk matrices at a time. Exact, not approximate: the same
softmax, computed in float32 at least (float64 stays float64). Needs no equal head widths.
"""
from __future__ import annotations

from typing import Tuple

import torch

# elements of one block's Nq_block x Nk matrix: 2**24 floats are 64 MiB, a few of them live at a time
BLOCK_ELEMENTS = 2**24


def _blocks(queries: int, keys: int, block_elements: int):
    size = max(1, block_elements // max(keys, 1))
    return [(start, min(start + size, queries)) for start in range(0, queries, size)]


class ChunkedAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float,
                block_elements: int) -> torch.Tensor:
        with torch.autocast(q.device.type, enabled=False):  # the float32 promised above, also under autocast
            return ChunkedAttention._forward(ctx, q, k, v, scale, block_elements)

    @staticmethod
    def _forward(ctx, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float,
                 block_elements: int) -> torch.Tensor:
        work = torch.promote_types(q.dtype, torch.float32)
        kw, vw = k.to(work), v.to(work)
        out = q.new_empty(*q.shape[:-1], v.shape[-1])
        lse = q.new_empty(q.shape[:-1], dtype=work)
        for start, stop in _blocks(q.shape[-2], k.shape[-2], block_elements):
            logits = q[..., start:stop, :].to(work) @ kw.transpose(-1, -2) * scale
            row_lse = logits.logsumexp(-1, keepdim=True)
            out[..., start:stop, :] = ((logits - row_lse).exp_() @ vw).to(out.dtype)
            lse[..., start:stop] = row_lse.squeeze(-1)
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.scale, ctx.block_elements = scale, block_elements
        return out

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor) -> Tuple[torch.Tensor | None, ...]:
        with torch.autocast(grad_out.device.type, enabled=False):
            return ChunkedAttention._backward(ctx, grad_out)

    @staticmethod
    def _backward(ctx, grad_out: torch.Tensor) -> Tuple[torch.Tensor | None, ...]:
        q, k, v, out, lse = ctx.saved_tensors
        scale, work = ctx.scale, lse.dtype
        kw, vw = k.to(work), v.to(work)
        grad_out = grad_out.to(work)
        delta = (grad_out * out.to(work)).sum(-1, keepdim=True)  # rowsum(dO * O) = sum_j P_ij dP_ij
        grad_q = torch.empty_like(q, dtype=work)
        grad_k = torch.zeros_like(k, dtype=work)
        grad_v = torch.zeros_like(v, dtype=work)
        for start, stop in _blocks(q.shape[-2], k.shape[-2], ctx.block_elements):
            q_block = q[..., start:stop, :].to(work)
            probs = (q_block @ kw.transpose(-1, -2) * scale - lse[..., start:stop, None]).exp_()
            do = grad_out[..., start:stop, :]
            grad_v += probs.transpose(-1, -2) @ do
            grad_logits = probs * (do @ vw.transpose(-1, -2) - delta[..., start:stop, :])
            grad_q[..., start:stop, :] = grad_logits @ kw * scale
            grad_k += grad_logits.transpose(-1, -2) @ q_block * scale
        return grad_q.to(q.dtype), grad_k.to(k.dtype), grad_v.to(v.dtype), None, None


def chunked_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float,
                      block_elements: int | None = None) -> torch.Tensor:
    """softmax(q k^T * scale) v for q (..., Nq, d), k (..., Nk, d), v (..., Nk, e): memory linear in
    Nq + Nk, plus one block of `block_elements` (default: the module's BLOCK_ELEMENTS)."""
    return ChunkedAttention.apply(q, k, v, scale, block_elements or BLOCK_ELEMENTS)
