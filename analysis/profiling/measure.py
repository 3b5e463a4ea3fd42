"""Measure one training forward: the bytes autograd saves for backward (and the CUDA peak of a step).

Saved tensors are caught with `torch.autograd.graph.saved_tensors_hooks`; each storage is counted once
(views and in-place results share it) and parameters/buffers are left out, so what remains is the
activation memory a backward pass needs. The `fake` device runs the same code with shape-only tensors
(FakeTensorMode, CPU kernel choices), which measures models too large to run on this machine.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Iterator, List, Mapping

import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode

DEVICES = ("cpu", "cuda", "fake")


def storage_key(tensor: torch.Tensor) -> int:
    """Identity of the memory behind a tensor: equal for views, slices and in-place results."""
    return tensor.untyped_storage()._cdata


@dataclass(frozen=True)
class SavedStorage:
    """One storage kept for backward: its first saved view's shape, its size and the scope saving it."""

    shape: tuple
    dtype: torch.dtype
    nbytes: int
    scope: str  # name of the innermost watched module active when it was first saved ("" outside)


@dataclass
class ForwardCost:
    """What one forward of a batch keeps for backward: its saved storages (activations only)."""

    saved: List[SavedStorage] = field(default_factory=list)

    @property
    def activation_bytes(self) -> int:
        return sum(item.nbytes for item in self.saved)


class _SavedTensorMeter:
    """saved_tensors_hooks that record each new storage once, attributed to the active scope."""

    def __init__(self, excluded: List[torch.Tensor]):
        self._alive = list(excluded)  # keeps storages alive so their keys are never reused
        self.excluded = {storage_key(t) for t in excluded}
        self.keys: set[int] = set()
        self.saved: List[SavedStorage] = []
        self.scopes: List[str] = []

    def pack(self, tensor: torch.Tensor) -> torch.Tensor:
        """Record the storage; hand autograd a detached alias (the tensor itself would form a
        tensor -> grad_fn -> saved tensor cycle that Python's collector cannot see, leaking the graph)."""
        alias = tensor.detach()
        key = storage_key(alias)
        if key not in self.excluded and key not in self.keys:
            self.keys.add(key)
            self._alive.append(alias)
            scope = self.scopes[-1] if self.scopes else ""
            self.saved.append(SavedStorage(tuple(alias.shape), alias.dtype, alias.untyped_storage().nbytes(), scope))
        return alias

    @contextlib.contextmanager
    def watching(self, scopes: Mapping[str, nn.Module]) -> Iterator[None]:
        """Push a module's name while its forward runs, so saved storages know where they come from."""
        def leave(*_) -> None:
            self.scopes.pop()

        handles = []
        for name, module in scopes.items():
            handles.append(module.register_forward_pre_hook(lambda *_, n=name: self.scopes.append(n)))
            handles.append(module.register_forward_hook(leave))
        try:
            with torch.autograd.graph.saved_tensors_hooks(self.pack, lambda tensor: tensor):
                yield
        finally:
            for handle in handles:
                handle.remove()


def _model_state(model: nn.Module, fake_mode: FakeTensorMode | None) -> List[torch.Tensor]:
    """Parameters and buffers, plus their fake twins in fake mode (which views of them share)."""
    state = list(model.parameters()) + list(model.buffers())
    if fake_mode is not None:
        state += [fake_mode.from_tensor(t) for t in state]
    return state


def measure_forward(model: nn.Module, clip_shape: tuple, device: str = "cpu",
                    scopes: Mapping[str, nn.Module] | None = None) -> ForwardCost:
    """Run one training-mode forward of a random clip of `clip_shape` on `device` and measure it.

    `model` must already live on `device` (CPU for `fake`). `scopes` names modules (e.g. attention
    blocks) whose saved storages are told apart in the result.
    """
    model.train()
    fake_mode = FakeTensorMode(allow_non_fake_inputs=True) if device == "fake" else None
    meter = _SavedTensorMeter(_model_state(model, fake_mode))
    with fake_mode or contextlib.nullcontext():
        clip = torch.randn(clip_shape, device="cpu" if device == "fake" else device)
        with meter.watching(scopes or {}):
            model(clip)
    return ForwardCost(meter.saved)


def cuda_peak_bytes(model: nn.Module, clip_shape: tuple) -> int:
    """Peak CUDA memory of one forward + backward of a random clip (model already on the GPU)."""
    model.train()
    model.zero_grad(set_to_none=True)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    clip = torch.randn(clip_shape, device="cuda")
    model(clip).float().sum().backward()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated()
    model.zero_grad(set_to_none=True)
    return int(peak)
