"""Random weights for equivalence checks: no layer left at an initialisation that hides a mistake."""
from pathlib import Path
from typing import Any, Sequence

import torch


def randomize(module: torch.nn.Module, seed: int) -> None:
    """Random conv/linear weights and BN statistics and affine terms, so no branch is an identity. Inside
    non-local blocks the embeddings are scaled down: a dot-product block is cubic in them, and five blocks of
    full-size random embeddings overflow float32 in mmaction2 as in ours."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, layer in module.named_modules():
            gain = 0.1 if "non_local_block" in name and not name.endswith("conv_out.conv") else 1.0
            if isinstance(layer, torch.nn.modules.batchnorm._BatchNorm):
                layer.weight.copy_(torch.rand(layer.weight.shape, generator=generator) + 0.5)
                layer.bias.copy_(torch.randn(layer.bias.shape, generator=generator) * 0.2)
                layer.running_mean.copy_(torch.randn(layer.running_mean.shape, generator=generator) * 0.2)
                layer.running_var.copy_(torch.rand(layer.running_var.shape, generator=generator) + 0.5)
            elif isinstance(layer, (torch.nn.Conv2d, torch.nn.Conv3d, torch.nn.Linear)):
                fan_in = layer.weight[0].numel()
                layer.weight.copy_(torch.randn(layer.weight.shape, generator=generator) * gain * (1 / fan_in) ** 0.5)
                if layer.bias is not None:
                    layer.bias.copy_(torch.randn(layer.bias.shape, generator=generator) * 0.1)


def random_checkpoint(path: Path, cfg: Any, labels: Sequence[str], seed: int) -> Path:
    """A checkpoint of ours for `cfg` (a composed config) with random weights, BN statistics included."""
    from engine.checkpoint import FORMAT, config_to_container, save_checkpoint
    from models.build import build_model

    model = build_model(cfg.model, len(labels))
    randomize(model, seed=seed)
    save_checkpoint({"format": FORMAT, "model": model.state_dict(), "config": config_to_container(cfg),
                     "labels": list(labels), "step": 0}, path)
    return path
