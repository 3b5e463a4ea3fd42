"""Which kernel each attention block of a model actually runs: read off torch's profiler.

One forward runs under the profiler with a `record_function` range around every placed attention
block; the scaled_dot_product_attention backend ops (or the query-chunked function) found inside a
block's range name its kernel. Blocks whose path involves no SDPA report that path instead
(`associative`, `prefix-sum`, `reference`; `explicit` for blocks built from plain ops, e.g. SE, CBAM).
"""
from __future__ import annotations

from typing import Callable, Dict, List

from torch import nn
from torch.autograd.profiler import record_function
from torch.profiler import ProfilerActivity, profile

from models.attention.chunked import ChunkedAttention

# profiler op name -> kernel (CUDA and CPU spellings of one backend map to one word)
KERNEL_OPS = {
    "aten::_scaled_dot_product_flash_attention": "flash",
    "aten::_scaled_dot_product_flash_attention_for_cpu": "flash",
    "aten::_scaled_dot_product_efficient_attention": "efficient",
    "aten::_scaled_dot_product_cudnn_attention": "cudnn",
    "aten::_scaled_dot_product_attention_math": "math",
    "aten::_scaled_dot_product_fused_attention_overrideable": "overrideable",
    ChunkedAttention.__name__: "chunked",
}
SCOPE = "attention_block::"


def _scope_hooks(blocks: Dict[str, nn.Module]) -> List:
    """Forward pre/post hooks that open and close one profiler range per block call."""
    handles = []
    for name, block in blocks.items():
        ranges: List[record_function] = []

        def enter(*_, name=name, ranges=ranges) -> None:
            ranges.append(record_function(SCOPE + name))
            ranges[-1].__enter__()

        def leave(*_, ranges=ranges) -> None:
            ranges.pop().__exit__(None, None, None)

        handles += [block.register_forward_pre_hook(enter), block.register_forward_hook(leave)]
    return handles


def _enclosing_block(event) -> str | None:
    parent = event.cpu_parent
    while parent is not None:
        if parent.name.startswith(SCOPE):
            return parent.name[len(SCOPE):]
        parent = parent.cpu_parent
    return None


def observe_kernels(blocks: Dict[str, nn.Module], forward: Callable[[], object]) -> List[Dict[str, str]]:
    """[{block, kernel}] for `blocks` (name -> module) while `forward()` runs once.

    A block whose `attention_path` is `sdpa` reports the kernels seen in its range ("+"-joined if
    several, `none seen` if the forward never reached it); other blocks report their path.
    """
    handles = _scope_hooks(blocks)
    try:
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            forward()
    finally:
        for handle in handles:
            handle.remove()
    seen: Dict[str, set] = {name: set() for name in blocks}
    for event in prof.events():
        kernel = KERNEL_OPS.get(event.name)
        block = _enclosing_block(event) if kernel else None
        if block is not None:
            seen[block].add(kernel)
    rows = []
    for name, block in blocks.items():
        path = getattr(block, "attention_path", "explicit")
        kernel = ("+".join(sorted(seen[name])) or "none seen") if path == "sdpa" else path
        rows.append({"block": name, "kernel": kernel})
    return rows
