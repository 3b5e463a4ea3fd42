"""The query-chunked attention behind the fused path where SDPA would take its math kernel: exact
(gradcheck, fused = reference), linear in memory, and the kernel each block runs as the profiler sees it."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

import models.attention.chunked as chunked
from analysis.profiling.attention_kernels import observe_kernels
from analysis.profiling.measure import measure_forward
from models.attention.chunked import chunked_attention
from models.attention.danet import PositionAttention
from models.attention.non_local import NonLocalBlock
from models.attention.tokens import sdpa_has_fused_kernel
from tests.test_models_nonlocal import ATOL, RTOL, _LargestOutput, _outputs_and_grads, _randomize


def test_chunked_attention_passes_gradcheck_across_blocks():
    """float64, unequal widths of q/k and v, 20 queries in blocks of 3 (40 elements / 12 keys)."""
    torch.manual_seed(0)
    q, k = torch.randn(2, 20, 6, dtype=torch.float64), torch.randn(2, 12, 6, dtype=torch.float64)
    v = torch.randn(2, 12, 4, dtype=torch.float64)
    inputs = tuple(t.requires_grad_() for t in (q, k, v))
    expected = (q @ k.transpose(1, 2) * 0.3).softmax(-1) @ v
    torch.testing.assert_close(chunked_attention(q, k, v, 0.3, block_elements=40), expected)
    assert torch.autograd.gradcheck(lambda *t: chunked_attention(*t, 0.3, block_elements=40), inputs)


@pytest.mark.parametrize("mode, groups", [("embedded_gaussian", 1), ("embedded_gaussian", 2), ("gaussian", 1)])
def test_fused_equals_reference_where_sdpa_would_use_math(mode, groups, monkeypatch):
    monkeypatch.setattr(chunked, "BLOCK_ELEMENTS", 64)  # several query blocks
    block = _randomize(NonLocalBlock(8, mode=mode, groups=groups)).eval()
    x = torch.randn(2, 8, 4, 6, 6)
    block.implementation = "reference"
    expected = _outputs_and_grads(block, x)
    block.implementation = "fused"
    scale = max(ref.abs().max().item() for ref in expected)
    with sdpa_kernel(SDPBackend.MATH):
        ours = _outputs_and_grads(block, x)
    for got, ref in zip(ours, expected):
        torch.testing.assert_close(got, ref, rtol=RTOL, atol=ATOL * scale)


def test_chunked_path_holds_one_block_of_the_affinity_at_a_time(monkeypatch):
    """1024 queries x 256 keys under forced math: no tensor of forward or backward reaches the
    1024 x 256 matrix, only blocks of 16 queries (4096 elements)."""
    monkeypatch.setattr(chunked, "BLOCK_ELEMENTS", 4096)
    block = _randomize(NonLocalBlock(4))
    x = torch.randn(1, 4, 4, 16, 16, requires_grad=True)
    with sdpa_kernel(SDPBackend.MATH), _LargestOutput() as probe:
        block(x).sum().backward()
    assert probe.largest < 1024 * 256 and probe.largest >= 4096


@pytest.mark.parametrize("mode", ["embedded_gaussian", "gaussian"])
def test_chunked_path_saves_no_more_than_the_flash_kernel(mode):
    """Saved-for-backward bytes (analysis/profiling/measure.py): the chunked path keeps q, k, v, the output and the
    log-sum-exp, no more than the CPU flash kernel (which pads to one width), far below the reference."""
    block = NonLocalBlock(16, mode=mode, subsample=False)
    shape = (1, 16, 4, 16, 16)  # 1024 positions
    costs = {}
    for name, implementation, backend in (("flash", "fused", SDPBackend.FLASH_ATTENTION),
                                          ("chunked", "fused", SDPBackend.MATH),
                                          ("reference", "reference", SDPBackend.MATH)):
        block.implementation = implementation
        with sdpa_kernel(backend):
            costs[name] = measure_forward(block, shape)
    pairs = 1024 * 1024
    assert max(item.nbytes for item in costs["chunked"].saved) < pairs * 4
    assert costs["chunked"].activation_bytes <= costs["flash"].activation_bytes
    assert costs["chunked"].activation_bytes < 0.1 * costs["reference"].activation_bytes


class _Attend(nn.Module):
    attention_path = "sdpa"

    def __init__(self, q):
        super().__init__()
        self.q = q

    def forward(self):
        return F.scaled_dot_product_attention(self.q, self.q, self.q)


@pytest.mark.parametrize("backends, kernel", [([SDPBackend.FLASH_ATTENTION, SDPBackend.MATH], "flash"),
                                              ([SDPBackend.MATH], "math")])
def test_plain_sdpa_kernel_is_read_off_the_profiler(backends, kernel):
    attend = _Attend(torch.randn(1, 1, 64, 512))
    with sdpa_kernel(backends):
        assert observe_kernels({"attend": attend}, attend) == [{"block": "attend", "kernel": kernel}]
        assert sdpa_has_fused_kernel(attend.q, attend.q, attend.q) == (kernel == "flash")


@pytest.mark.parametrize("block", [NonLocalBlock(16), PositionAttention(16, reduction=4)], ids=["nonlocal", "pam"])
def test_blocks_report_flash_on_cpu_and_chunked_under_forced_math(block):
    x = torch.randn(1, 16, 2, 4, 4)
    for backends, kernel in (([SDPBackend.FLASH_ATTENTION, SDPBackend.MATH], "flash"), ([SDPBackend.MATH], "chunked")):
        with sdpa_kernel(backends):
            assert observe_kernels({"b": block}, lambda: block(x)) == [{"block": "b", "kernel": kernel}]
    block.implementation = "reference"
    assert observe_kernels({"b": block}, lambda: block(x)) == [{"block": "b", "kernel": "reference"}]
