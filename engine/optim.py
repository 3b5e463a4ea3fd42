"""Optimizers and learning-rate schedules built from `optim.*`.

Weight decay applies to weight matrices and kernels only, never to biases and normalization scales
(every parameter with fewer than two dimensions). Schedules count optimizer steps and start with a
linear warm-up from `lr * warmup_start_factor` to `lr`.
"""
from __future__ import annotations

import math
from typing import Callable, Dict, List

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from engine.config import OptimConfig
from errors import UserError


def parameter_groups(model: nn.Module, weight_decay: float) -> List[dict]:
    """Two groups: decayed weights, and biases/norm parameters without decay."""
    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad:
            (decay if param.ndim >= 2 else no_decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _sgd(groups: List[dict], cfg: OptimConfig) -> torch.optim.Optimizer:
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov)


def _adamw(groups: List[dict], cfg: OptimConfig) -> torch.optim.Optimizer:
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas))


OPTIMIZERS: Dict[str, Callable[[List[dict], OptimConfig], torch.optim.Optimizer]] = {
    "sgd": _sgd,
    "adamw": _adamw,
}


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    """The optimizer named by `optim.name` over the model's trainable parameters."""
    if cfg.name not in OPTIMIZERS:
        raise UserError(f"optim.name={cfg.name!r}: expected one of {sorted(OPTIMIZERS)}")
    if cfg.nesterov and (cfg.name != "sgd" or cfg.momentum <= 0):
        raise UserError("optim.nesterov=true needs optim.name=sgd and optim.momentum > 0")
    return OPTIMIZERS[cfg.name](parameter_groups(model, cfg.weight_decay), cfg)


def _cosine(progress: float, cfg: OptimConfig) -> float:
    return cfg.min_lr_factor + (1 - cfg.min_lr_factor) * 0.5 * (1 + math.cos(math.pi * progress))


def _multistep(progress: float, cfg: OptimConfig) -> float:
    return cfg.gamma ** sum(progress >= milestone for milestone in cfg.milestones)


def _constant(progress: float, cfg: OptimConfig) -> float:
    return 1.0


SCHEDULES: Dict[str, Callable[[float, OptimConfig], float]] = {
    "cosine": _cosine,
    "multistep": _multistep,
    "constant": _constant,
}


def lr_factor(step: int, cfg: OptimConfig, total_steps: int) -> float:
    """LR factor at an optimizer step: linear warm-up, then the named decay over the remaining steps."""
    if step < cfg.warmup_steps:
        start = cfg.warmup_start_factor
        return start + (1 - start) * step / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, total_steps - cfg.warmup_steps)
    return SCHEDULES[cfg.schedule](min(progress, 1.0), cfg)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: OptimConfig, total_steps: int) -> LambdaLR:
    """A per-optimizer-step scheduler for `total_steps` steps (warm-up included).

    The factor is a closure, so the scheduler's state holds only its step count: a resumed run
    takes the schedule from its own config.
    """
    if cfg.schedule not in SCHEDULES:
        raise UserError(f"optim.schedule={cfg.schedule!r}: expected one of {sorted(SCHEDULES)}")
    if any(not 0 < m < 1 for m in cfg.milestones):
        raise UserError(f"optim.milestones={list(cfg.milestones)}: each must be a fraction in (0, 1)")
    if cfg.warmup_steps < 0 or not 0 < cfg.warmup_start_factor <= 1:
        raise UserError("optim.warmup_steps must be >= 0 and optim.warmup_start_factor in (0, 1]")

    def factor(step: int) -> float:
        return lr_factor(step, cfg, total_steps)

    return LambdaLR(optimizer, factor)
