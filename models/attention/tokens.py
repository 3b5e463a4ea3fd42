"""Shared plumbing of the position-attention blocks: grids <-> token matrices, and fused softmax attention."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from errors import UserError
from models.attention.chunked import chunked_attention


def check_groups(frames: int, groups: int) -> None:
    if frames % groups:
        raise UserError(f"attention groups={groups} does not divide the {frames} frames reaching the block")


def to_tokens(z: torch.Tensor, groups: int = 1) -> torch.Tensor:
    """(B, C, T, H, W) -> contiguous (B*groups, T/groups*H*W, C); `groups` splits time into chunks.

    Contiguous because the fused attention kernels need unit stride along channels.
    """
    b, c, t, h, w = z.shape
    check_groups(t, groups)
    z = z.reshape(b, c, groups, t // groups, h, w).permute(0, 2, 3, 4, 5, 1)
    return z.reshape(b * groups, (t // groups) * h * w, c).contiguous()


def from_tokens(y: torch.Tensor, shape: torch.Size, groups: int = 1) -> torch.Tensor:
    """Inverse of `to_tokens` for a grid of `shape` (B, *, T, H, W) and y's channel count."""
    b, _, t, h, w = shape
    y = y.reshape(b, groups, t // groups, h, w, y.shape[-1]).permute(0, 5, 1, 2, 3, 4)
    return y.reshape(b, -1, t, h, w)


def sdpa_has_fused_kernel(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> bool:
    """Whether scaled_dot_product_attention takes a fused kernel (flash or memory-efficient, both ranked
    before math) for these (B, 1, N, d) inputs, rather than the math kernel that keeps the Nq x Nk matrix.

    CUDA: torch's own eligibility checks (head width, dtype, alignment, GPU generation, enabled flags),
    which torch.compile evaluates while tracing. CPU (and shape-only fake tensors): the flash CPU kernel
    takes any width once q, k and v share one (the caller pads them), with no mask or dropout, so only
    its enabled flag decides; torch.compile cannot read that flag without a graph break, so compiled
    CPU code assumes the default (enabled).
    """
    if q.device.type == "cuda":
        params = torch.backends.cuda.SDPAParams(q, k, v, None, 0.0, False, False)
        return (torch.backends.cuda.can_use_flash_attention(params)
                or torch.backends.cuda.can_use_efficient_attention(params))
    return torch.compiler.is_compiling() or torch.backends.cuda.flash_sdp_enabled()


def fused_softmax_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    """softmax(q k^T * scale) v for (B, N, d) tokens, never storing the Nq x Nk matrix.

    Through scaled_dot_product_attention when it has a fused kernel for the inputs; the flash kernels
    need equal head widths, so the narrower side is zero-padded (zero columns of q and k leave q k^T
    unchanged; zero columns of v give zero outputs that are cut off). Where SDPA would fall back to its
    math kernel (e.g. CUDA flash stops at head width 256; res4/res5 non-local blocks have 512/1024),
    the exact query-chunked form in models/attention/chunked.py keeps memory linear instead.
    """
    width = max(q.shape[-1], v.shape[-1])
    q4, k4, v4 = (F.pad(t, (0, width - t.shape[-1])).unsqueeze(1) for t in (q, k, v))
    if not sdpa_has_fused_kernel(q4, k4, v4):
        return chunked_attention(q, k, v, scale)
    out = F.scaled_dot_product_attention(q4, k4, v4, scale=scale)
    return out.squeeze(1)[..., : v.shape[-1]]
