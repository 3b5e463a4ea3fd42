"""The pieces of one training step that `train` and `bench train` share: model placement, the loss,
and the optimizer update behind a (possibly fp16) gradient scaler."""
from __future__ import annotations

from typing import Dict

import torch
import torch.nn.functional as F
from torch import nn

from engine.config import TrainerConfig


def place_model(model: nn.Module, trainer: TrainerConfig, device: torch.device, distributed: bool) -> nn.Module:
    """SyncBatchNorm across ranks when asked (and distributed), channels_last_3d when asked, on `device`."""
    if trainer.sync_bn and distributed:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    memory_format = torch.channels_last_3d if trainer.channels_last else torch.contiguous_format
    return model.to(device, memory_format=memory_format)


def training_loss(model: nn.Module, logits: torch.Tensor, labels: torch.Tensor,
                  label_smoothing: float) -> Dict[str, torch.Tensor]:
    """{"loss": total, "loss_ce": ..., "loss_<aux>": ...}: CE + sum of the model's weighted auxiliary losses."""
    ce = F.cross_entropy(logits.float(), labels, label_smoothing=label_smoothing)
    terms = {"loss_ce": ce}
    total = ce
    weights = model.aux_loss_weights()
    for name, value in model.aux_losses().items():
        terms[f"loss_{name}"] = value
        total = total + weights[name] * value.float()
    return {"loss": total, **terms}


def optimizer_update(model: nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
                     clip_grad: float) -> None:
    """Clip (on unscaled gradients) when asked, step through the scaler, clear the gradients."""
    if clip_grad > 0:
        scaler.unscale_(optimizer)
        nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
