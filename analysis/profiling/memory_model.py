"""Analytic activation memory: what autograd saves for backward, predicted per layer type from shapes.

A forward on shape-only tensors (FakeTensorMode, no arithmetic) records every module call with its
input and output tensors. A rule per layer type then says which of them the layer's backward keeps
(a conv its input, a ReLU its output, a max-pool its input and int64 indices, ...). A tensor that
several layers keep is counted once, as autograd stores it once. Blocks that compute with functions
rather than submodules (attention cores) have their own rules in `analysis/profiling/attention_memory.py`.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, List, Tuple, Type

import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode

from analysis.profiling.measure import storage_key


@dataclass(frozen=True)
class Kept:
    """One tensor a layer keeps for backward: an identity (to count it once), its bytes and a kind."""

    key: Tuple
    nbytes: int
    kind: str = "activation"  # "affinity" marks attention matrices (query positions x key positions)


@dataclass
class ModuleCall:
    """One call of a module during the shape trace."""

    index: int
    module: nn.Module
    inputs: Tuple[torch.Tensor, ...]
    output: object


def kept(tensor: torch.Tensor, kind: str = "activation") -> Kept:
    """The layer keeps this very tensor (or a view of it): its whole storage stays alive."""
    return Kept(("storage", storage_key(tensor)), tensor.untyped_storage().nbytes(), kind)


def fresh(call: ModuleCall, label: str, numel: int, dtype: torch.dtype, kind: str = "activation") -> Kept:
    """The layer keeps a tensor of its own making (indices, statistics, an attention matrix)."""
    return Kept(("own", call.index, label), numel * torch.empty((), dtype=dtype).element_size(), kind)


Rule = Callable[[ModuleCall, "ShapeTrace"], Iterable[Kept]]
SAVE_RULES: Dict[Type[nn.Module], Rule] = {}


def save_rule(*types: Type[nn.Module]) -> Callable[[Rule], Rule]:
    """Register what a layer type keeps for backward (looked up along the module's class hierarchy)."""

    def add(rule: Rule) -> Rule:
        for kind in types:
            SAVE_RULES[kind] = rule
        return rule

    return add


def rule_for(module: nn.Module) -> Rule | None:
    for kind in type(module).__mro__:
        if kind in SAVE_RULES:
            return SAVE_RULES[kind]
    return None


class ShapeTrace:
    """Every module call of one training-mode forward on shape-only tensors, in completion order."""

    def __init__(self, model: nn.Module, clip_shape: tuple):
        self.calls: List[ModuleCall] = []
        self._last: Dict[int, ModuleCall] = {}
        counter = itertools.count()

        def record(module: nn.Module, args: tuple, output: object) -> None:
            inputs = tuple(a for a in args if isinstance(a, torch.Tensor))
            call = ModuleCall(next(counter), module, inputs, output)
            self.calls.append(call)
            self._last[id(module)] = call

        handles = [m.register_forward_hook(record) for m in model.modules()]
        model.train()
        try:
            with FakeTensorMode(allow_non_fake_inputs=True), torch.enable_grad():
                model(torch.empty(clip_shape))
        finally:
            for handle in handles:
                handle.remove()

    def last_call(self, module: nn.Module) -> ModuleCall:
        """The latest completed call of `module` (a block's rule reads its submodules' outputs)."""
        return self._last[id(module)]


@dataclass
class Prediction:
    """Predicted bytes kept for backward, in total and of attention matrices alone."""

    activation_bytes: int = 0
    affinity_bytes: int = 0
    unknown_layers: List[str] = field(default_factory=list)


def predict_saved_bytes(model: nn.Module, clip_shape: tuple) -> Prediction:
    """Predict the activation bytes one training forward of a `clip_shape` batch keeps for backward."""
    trace = ShapeTrace(model, clip_shape)
    seen: Dict[Tuple, Kept] = {}
    unknown = set()
    for call in trace.calls:
        rule = rule_for(call.module)
        if rule is None:
            if not list(call.module.children()):
                unknown.add(type(call.module).__name__)
            continue
        for item in rule(call, trace):
            seen.setdefault(item.key, item)
    return Prediction(activation_bytes=sum(item.nbytes for item in seen.values()),
                      affinity_bytes=sum(item.nbytes for item in seen.values() if item.kind == "affinity"),
                      unknown_layers=sorted(unknown))


# ---- rules for the standard layers -------------------------------------------------------------

@save_rule(nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
def _keeps_input(call: ModuleCall, trace: ShapeTrace) -> Iterable[Kept]:
    return [kept(call.inputs[0])]


@save_rule(nn.ReLU, nn.Sigmoid, nn.Tanh, nn.Softmax)
def _keeps_output(call: ModuleCall, trace: ShapeTrace) -> Iterable[Kept]:
    return [kept(call.output)]


@save_rule(nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)
def _batch_norm(call: ModuleCall, trace: ShapeTrace) -> Iterable[Kept]:
    """Input, plus the batch mean and inverse std per channel when normalising with batch statistics."""
    x = call.inputs[0]
    items = [kept(x)]
    if call.module.training or call.module.running_mean is None:
        channels = x.shape[1]
        items += [fresh(call, "mean", channels, x.dtype), fresh(call, "invstd", channels, x.dtype)]
    return items


@save_rule(nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)
def _max_pool(call: ModuleCall, trace: ShapeTrace) -> Iterable[Kept]:
    return [kept(call.inputs[0]), fresh(call, "indices", call.output.numel(), torch.int64)]


@save_rule(nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)
def _avg_pool(call: ModuleCall, trace: ShapeTrace) -> Iterable[Kept]:
    return [kept(call.inputs[0])]


@save_rule(nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d)
def _adaptive_avg_pool(call: ModuleCall, trace: ShapeTrace) -> Iterable[Kept]:
    """A global pool is a mean (keeps nothing); any other output size keeps the input."""
    x, out = call.inputs[0], call.output
    pooled_dims = out.shape[2:]
    return [] if all(size == 1 for size in pooled_dims) else [kept(x)]


@save_rule(nn.Dropout)
def _dropout(call: ModuleCall, trace: ShapeTrace) -> Iterable[Kept]:
    """The random mask, in the input's dtype as the CPU kernel keeps it (CUDA keeps bytes: smaller)."""
    x = call.inputs[0]
    if not call.module.training or call.module.p == 0:
        return []
    return [fresh(call, "mask", x.numel(), x.dtype)]


@save_rule(nn.Identity, nn.Flatten, nn.Unflatten)
def _keeps_nothing(call: ModuleCall, trace: ShapeTrace) -> Iterable[Kept]:
    return []
