"""Shared plumbing of the position-attention blocks: grids <-> token matrices, and fused softmax attention."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from errors import UserError


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


def fused_softmax_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    """softmax(q k^T * scale) v through scaled_dot_product_attention, never storing the Nq x Nk matrix.

    The CPU flash kernel needs equal head widths, so the narrower side is zero-padded (zero columns of
    q and k leave q k^T unchanged; zero columns of v give zero outputs that are cut off).
    """
    width = max(q.shape[-1], v.shape[-1])
    q, k = (F.pad(t, (0, width - t.shape[-1])) for t in (q, k))
    out = F.scaled_dot_product_attention(q.unsqueeze(1), k.unsqueeze(1),
                                         F.pad(v, (0, width - v.shape[-1])).unsqueeze(1), scale=scale)
    return out.squeeze(1)[..., : v.shape[-1]]
