"""`data.batch_size=auto`: the largest batch whose predicted training memory fits a budget.

The prediction is the analytic memory model's (analysis/memory_model.py): the bytes autograd saves for
backward, from a shape-only forward of the configured model on a `(batch, 3, T, crop, crop)` clip.
  - CPU: the budget (`trainer.memory_budget`, required) bounds those saved bytes alone.
  - CUDA: the budget (`trainer.memory_budget`, else the device's free memory) bounds the predicted peak of
    a step: weights and buffers + gradients + optimizer state + autocast's half-precision weight copies
    (with `trainer.amp`) + saved activations, plus a reserve of CUDA_RESERVE of that sum for what the model
    leaves out (the input batch, activation gradients in flight, cuDNN workspaces, allocator rounding).
Activations are traced in float32. Under CUDA autocast most saved tensors are 16-bit, so there the choice
errs on the small side; CPU autocast keeps float32 and bfloat16 copies (about 1.7x the float32 bytes), so on a
CPU `auto` requires `trainer.amp=none`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Tuple

import torch
from torch import nn

import analysis.profiling.attention_memory  # noqa: F401  (registers the attention blocks' memory rules)
from analysis.profiling.budget import format_bytes, parse_bytes
from analysis.profiling.memory_model import predict_saved_bytes
from engine.config import ExperimentConfig, OptimConfig
from errors import UserError
from models.build import build_model
from video.sampling import clip_length

CUDA_RESERVE = 0.10  # share of the predicted CUDA peak added for what the memory model does not see
MAX_BATCH = 1 << 16  # the search's upper end (a bound on a runaway, far above any real choice)
# tensors per parameter that each optimizer keeps once it has stepped
OPTIMIZER_STATES: Dict[str, Callable[[OptimConfig], int]] = {
    "sgd": lambda optim: 1 if optim.momentum > 0 else 0,  # the momentum buffer
    "adamw": lambda optim: 2,  # exp_avg and exp_avg_sq
}


@dataclass(frozen=True)
class BatchChoice:
    """The batch chosen, the prediction that chose it, and the line that says so (batch 0: none fits)."""

    batch: int
    predicted_bytes: int  # of the chosen batch (of batch 1 when none fits)
    next_predicted_bytes: int  # of one clip more
    budget_bytes: int
    line: str


def clip_shape(cfg: ExperimentConfig, batch: int) -> Tuple[int, ...]:
    """The model input of one training batch: (batch, 3, frames or segments, crop, crop)."""
    crop = cfg.data.transforms.crop_size
    return (batch, 3, clip_length(cfg.data.sampling), crop, crop)


def largest_batch(cost: Callable[[int], int], budget: int) -> int:
    """The largest batch b with cost(b) <= budget, for a cost that grows with b (0: not even one fits).

    Saved bytes are affine in the batch, so the line through cost(1) and cost(2) lands on the answer or
    next to it; exact costs of the neighbours settle it."""
    first = cost(1)
    if first > budget:
        return 0
    per_clip = max(cost(2) - first, 1)
    batch = max(1, min(MAX_BATCH, 1 + (budget - first) // per_clip))
    while batch > 1 and cost(batch) > budget:
        batch -= 1
    while batch < MAX_BATCH and cost(batch + 1) <= budget:
        batch += 1
    return batch


def _state_bytes(model: nn.Module, cfg: ExperimentConfig) -> Dict[str, int]:
    """The batch-independent part of a CUDA step, term by term."""
    if cfg.optim.name not in OPTIMIZER_STATES:
        raise UserError(f"optim.name={cfg.optim.name!r}: expected one of {sorted(OPTIMIZER_STATES)}")
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    return {"weights": params + buffers, "gradients": params,
            "optimizer state": params * OPTIMIZER_STATES[cfg.optim.name](cfg.optim),
            "half-precision weight copies": params // 2 if cfg.trainer.amp != "none" else 0}


def cuda_free_bytes(device: torch.device) -> int:
    """Free memory of the CUDA device as the driver reports it (other processes' use excluded)."""
    return int(torch.cuda.mem_get_info(device)[0])


def choose_batch(cfg: ExperimentConfig, device: torch.device, num_classes: int) -> BatchChoice:
    """The largest batch whose prediction fits the budget on `device` (see the module docstring)."""
    model = build_model(cfg.model, num_classes)
    memo: Dict[int, int] = {}
    unmodelled: set = set()

    def saved(batch: int) -> int:
        if batch not in memo:
            prediction = predict_saved_bytes(model, clip_shape(cfg, batch))
            memo[batch] = prediction.activation_bytes
            unmodelled.update(prediction.unknown_layers)
        return memo[batch]

    text = cfg.trainer.memory_budget
    if device.type == "cuda":
        budget = parse_bytes(text, "trainer.memory_budget") if text else cuda_free_bytes(device)
        source = f"trainer.memory_budget={text}" if text else f"the free memory of {device}"
        state = _state_bytes(model, cfg)
        fixed = sum(state.values())

        def cost(batch: int) -> int:
            return int((fixed + saved(batch)) * (1 + CUDA_RESERVE))

        what = "predicted CUDA step peak"
        counted = " + ".join(f"{name} {format_bytes(value)}" for name, value in state.items() if value)
        counted = f"{counted} + activations saved for backward, + {100 * CUDA_RESERVE:.0f}% reserve"
    else:
        if not text:
            raise UserError(f"data.batch_size=auto on {device.type} needs trainer.memory_budget (or train --budget), "
                            "e.g. 2GiB: the bytes saved for backward it may take")
        if cfg.trainer.amp != "none":  # CPU autocast keeps float32 and bfloat16 copies: 1.7x the float32 bytes
            raise UserError(f"data.batch_size=auto on {device.type} predicts float32 activations, and "
                            f"trainer.amp={cfg.trainer.amp} there saves more than float32 does; use trainer.amp=none "
                            "or a fixed data.batch_size")
        budget, source, cost = parse_bytes(text, "trainer.memory_budget"), f"trainer.memory_budget={text}", saved
        what, counted = "predicted bytes saved for backward", "activations only"
    batch = largest_batch(cost, budget)
    chosen, following = cost(max(batch, 1)), cost(batch + 1)
    of_budget = f"the budget of {format_bytes(budget)} ({source})"
    if batch == 0:
        line = (f"data.batch_size=auto: not one clip fits {of_budget} on {device}: the {what} of batch 1 is "
                f"{format_bytes(chosen)} ({counted})")
    else:
        line = (f"data.batch_size=auto: chose {batch} on {device}; {what} {format_bytes(chosen)} ({counted}) "
                f"of {of_budget}, margin {format_bytes(budget - chosen)}; batch {batch + 1}: "
                f"{format_bytes(following)}")
    if unmodelled:
        line += f"; note: no memory rule for {', '.join(sorted(unmodelled))}, left out of the prediction"
    return BatchChoice(batch, chosen, following, budget, line)
