"""DANet's position (PAM) and channel (CAM) attention (Fu et al., 2019) over all T*H*W positions.

PAM: E_i = gamma * sum_j softmax_j(q_i . k_j) v_j + x_i with q, k 1x1x1 convs to C/`reduction` and v to
C (no temperature, as in the paper). CAM: energy = X X^T (C x C, X the C x THW matrix), attention =
softmax(max_row(energy) - energy) (the max-minus-energy normalisation), E = beta * attention X + X.
gamma and beta start at 0, so new blocks are identities. PAM's fused implementation runs through
scaled_dot_product_attention (q and k zero-padded to C, which the CPU flash kernel needs) and never
builds the THW x THW matrix; `attention_rows` returns chosen query rows under either implementation.
"""
from __future__ import annotations

from typing import Tuple

import torch
from torch import nn

from models.attention.tokens import from_tokens, fused_softmax_attention, to_tokens
from models.options import check_choice, reduced_width
from models.registry import ATTENTION

IMPLEMENTATIONS = ("auto", "fused", "reference")


@ATTENTION.register("pam")
class PositionAttention(nn.Module):
    """DANet position attention module; (B, C, T, H, W) -> same."""

    def __init__(self, in_channels: int, reduction: int = 8, implementation: str = "auto") -> None:
        super().__init__()
        inner = reduced_width(in_channels, reduction, "pam reduction")
        self.implementation = check_choice("pam implementation", implementation, IMPLEMENTATIONS)
        self.query = nn.Conv3d(in_channels, inner, 1)
        self.key = nn.Conv3d(in_channels, inner, 1)
        self.value = nn.Conv3d(in_channels, in_channels, 1)
        self.gamma = nn.Parameter(torch.zeros(1))

    @property
    def attention_path(self) -> str:
        """`sdpa` (kernel chosen at run time) or `reference` (the N x N matrix)."""
        return "reference" if self.implementation == "reference" else "sdpa"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = (to_tokens(conv(x)) for conv in (self.query, self.key, self.value))
        if self.implementation == "reference":
            y = (q @ k.transpose(1, 2)).softmax(dim=-1) @ v
        else:
            y = fused_softmax_attention(q, k, v, scale=1.0)
        return self.gamma * from_tokens(y, x.shape) + x

    def attention_rows(self, x: torch.Tensor, queries: torch.Tensor) -> Tuple[torch.Tensor, Tuple[int, int, int]]:
        """Rows (B, Q, T*H*W) of the attention of flat query positions t*H*W + y*W + x; key grid (T, H, W)."""
        q = to_tokens(self.query(x))[:, queries]
        return (q @ to_tokens(self.key(x)).transpose(1, 2)).softmax(dim=-1), tuple(x.shape[2:])


@ATTENTION.register("cam")
class ChannelAttention(nn.Module):
    """DANet channel attention module; (B, C, T, H, W) -> same."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.beta = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(2)  # (B, C, N)
        energy = flat @ flat.transpose(1, 2)
        attention = (energy.amax(dim=-1, keepdim=True) - energy).softmax(dim=-1)
        return self.beta * (attention @ flat).view_as(x) + x
