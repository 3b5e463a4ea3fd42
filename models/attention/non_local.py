"""Non-local block (Wang et al., 2018): z = x + BN(W_z y), y_i = sum_j f(x_i, x_j) g(x_j) / C(x).

Modes (theta, phi, g are 1x1x1 convs to `in_channels // reduction` channels):
  gaussian           f = exp(x_i . x_j * s),             normalised by softmax over j
  embedded_gaussian  f = exp(theta_i . phi_j * s),       normalised by softmax over j
  dot_product        f = theta_i . phi_j,                 divided by the number of keys N
  concatenation      f = ReLU(w^T [theta_i, phi_j]),      divided by N
with s = 1/sqrt(key width) when `scale` is on. `subsample` max-pools phi and g by 1x2x2; `groups` splits
time into chunks that attend only within themselves. The output BN starts with zero scale, so a new
block is the identity.

`implementation`: `reference` builds the Nq x Nk affinity matrix; `fused` never does: the softmax modes
go through scaled_dot_product_attention (CPU flash kernel: saves q, k, v, output and log-sum-exp; where
SDPA would take its math kernel, an exact query-chunked equivalent that saves the same),
dot_product uses associativity theta (phi^T g) / N (linear in N), and concatenation uses
w^T[theta_i, phi_j] = a_i + b_j: with b sorted, the j where a_i + b_j > 0 are a prefix, so
sum_j ReLU(a_i + b_j) g_j = a_i * G[c_i] + BG[c_i] from prefix sums G of g and BG of b*g, c_i found by
binary search (O(N log N), linear memory). `auto` is the fused path.
"""
from __future__ import annotations

import math
from typing import Tuple

import torch
from torch import nn

from models.attention.tokens import check_groups, from_tokens, fused_softmax_attention, to_tokens
from models.options import check_choice, check_positive_int, reduced_width
from models.registry import ATTENTION

MODES = ("gaussian", "embedded_gaussian", "dot_product", "concatenation")
SOFTMAX_MODES = ("gaussian", "embedded_gaussian")
IMPLEMENTATIONS = ("auto", "fused", "reference")
FUSED_PATHS = {"gaussian": "sdpa", "embedded_gaussian": "sdpa", "dot_product": "associative",
               "concatenation": "prefix-sum"}


def concat_relu_aggregate(a: torch.Tensor, b: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """sum_j ReLU(a_i + b_j) v_j for a (B, Nq), b (B, Nk), v (B, Nk, C), without the Nq x Nk matrix.

    Computed in float32 at least: prefix sums over thousands of keys lose too much in half precision.
    """
    dtype = v.dtype
    a, b, v = (t.to(torch.promote_types(t.dtype, torch.float32)) for t in (a, b, v))
    b_sorted, order = b.sort(dim=1, descending=True)
    v_sorted = v.gather(1, order.unsqueeze(-1).expand_as(v))
    zero = v.new_zeros(v.shape[0], 1, v.shape[2])
    prefix_v = torch.cat([zero, v_sorted.cumsum(1)], dim=1)
    prefix_bv = torch.cat([zero, (b_sorted.unsqueeze(-1) * v_sorted).cumsum(1)], dim=1)
    # -b_sorted is ascending; the number of its entries below a_i is #{j : a_i + b_j > 0}
    count = torch.searchsorted(-b_sorted.detach(), a.detach().contiguous(), side="left")
    index = count.unsqueeze(-1).expand(-1, -1, v.shape[2])
    return (a.unsqueeze(-1) * prefix_v.gather(1, index) + prefix_bv.gather(1, index)).to(dtype)


@ATTENTION.register("nonlocal")
class NonLocalBlock(nn.Module):
    """Space-time non-local block; (B, C, T, H, W) -> same shape."""

    def __init__(self, in_channels: int, mode: str = "embedded_gaussian", reduction: int = 2,
                 subsample: bool = True, groups: int = 1, scale: bool = True,
                 implementation: str = "auto") -> None:
        super().__init__()
        self.mode = check_choice("nonlocal mode", mode, MODES)
        self.implementation = check_choice("nonlocal implementation", implementation, IMPLEMENTATIONS)
        self.groups = check_positive_int("nonlocal groups", groups)
        inner = reduced_width(in_channels, reduction, "nonlocal reduction")
        embedded = mode != "gaussian"
        self.theta = nn.Conv3d(in_channels, inner, 1) if embedded else None
        self.phi = nn.Conv3d(in_channels, inner, 1) if embedded else None
        self.g = nn.Conv3d(in_channels, inner, 1)
        self.pool = nn.MaxPool3d((1, 2, 2)) if subsample else nn.Identity()
        key_width = inner if embedded else in_channels
        self.scale = key_width ** -0.5 if scale else 1.0
        if mode == "concatenation":  # w of w^T [theta_i, phi_j]
            self.concat_weight = nn.Parameter(torch.randn(2 * inner) / math.sqrt(2 * inner))
        self.out = nn.Conv3d(inner, in_channels, 1, bias=False)
        self.bn = nn.BatchNorm3d(in_channels)
        nn.init.zeros_(self.bn.weight)
        nn.init.zeros_(self.bn.bias)

    @property
    def attention_path(self) -> str:
        """How the affinity is aggregated: `sdpa` (its kernel is chosen at run time), `associative`,
        `prefix-sum` or `reference` (the Nq x Nk matrix)."""
        if self.implementation == "reference":
            return "reference"
        return FUSED_PATHS[self.mode]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        queries, keys = self._query_map(x), self._key_map(x)
        q, k, v = (to_tokens(z, self.groups) for z in (queries, keys, self.pool(self.g(x))))
        if self.implementation == "reference":
            y = self._normalize(self._pairwise(q, k)) @ v
        else:
            y = self._fused_aggregate(q, k, v)
        return x + self.bn(self.out(from_tokens(y, x.shape, self.groups)))

    def _query_map(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.theta is None else self.theta(x)

    def _key_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(x if self.phi is None else self.phi(x))

    def _pairwise(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """Unnormalised f(q_i, k_j) for every pair (softmax modes: the logits)."""
        if self.mode in SOFTMAX_MODES:
            return q @ k.transpose(-1, -2) * self.scale
        if self.mode == "dot_product":
            return q @ k.transpose(-1, -2)
        a, b = self._concat_terms(q, k)
        return torch.relu(a.unsqueeze(-1) + b.unsqueeze(-2))

    def _normalize(self, f: torch.Tensor, allowed: torch.Tensor | None = None) -> torch.Tensor:
        """Rows of the affinity: softmax over the allowed keys, or f / (number of allowed keys)."""
        if self.mode in SOFTMAX_MODES:
            return (f if allowed is None else f.masked_fill(~allowed, float("-inf"))).softmax(-1)
        if allowed is None:
            return f / f.shape[-1]
        return f * allowed / allowed.sum(-1, keepdim=True)

    def _concat_terms(self, q: torch.Tensor, k: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """w^T [theta_i, phi_j] = a_i + b_j."""
        w_theta, w_phi = self.concat_weight.chunk(2)
        return q @ w_theta, k @ w_phi

    def _fused_aggregate(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        if self.mode in SOFTMAX_MODES:
            return fused_softmax_attention(q, k, v, self.scale)
        if self.mode == "dot_product":
            return q @ (k.transpose(-1, -2) @ v) / k.shape[1]
        a, b = self._concat_terms(q, k)
        return concat_relu_aggregate(a, b, v) / k.shape[1]

    def attention_rows(self, x: torch.Tensor, queries: torch.Tensor) -> Tuple[torch.Tensor, Tuple[int, int, int]]:
        """Affinity rows (B, Q, T*H'*W') of flat query positions t*H*W + y*W + x, and the key grid.

        Keys outside a query's time group get weight 0. Only Q rows are computed, under either
        implementation, so this is cheap at any clip size.
        """
        t, h, w = x.shape[2:]
        check_groups(t, self.groups)
        q = to_tokens(self._query_map(x))[:, queries]
        key_map = self._key_map(x)
        key_grid = tuple(key_map.shape[2:])
        frames_per_group = t // self.groups
        query_group = queries // (h * w) // frames_per_group
        key_group = torch.arange(key_grid[0], device=x.device) // frames_per_group
        key_group = key_group.repeat_interleave(key_grid[1] * key_grid[2])
        allowed = query_group.to(x.device).unsqueeze(1) == key_group.unsqueeze(0)
        rows = self._normalize(self._pairwise(q, to_tokens(key_map)), allowed.expand(x.shape[0], -1, -1))
        return rows, key_grid
