"""What every exporter takes and gives, the table of formats, and the checks they share."""
from __future__ import annotations

import copy
import importlib
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Callable, Dict, List, Optional, Tuple

import torch
from torch import nn

from errors import UserError
from models.config import ModelConfig
from models.registry import Registry

TOLERANCE = 1e-4  # largest max |diff| / max |logit| an exported model may show against ours


@dataclass
class ExportRequest:
    """One export: the model (eval mode, CPU), its config, the example clip shape (B, 3, T, H, W), the
    metadata to store where the format has room for it, the file to write, whether B may vary, and the
    input normalisation (mean, std on 0..1) for formats that carry their own preprocessing."""

    model: nn.Module
    model_cfg: ModelConfig
    input_shape: Tuple[int, ...]
    metadata: Dict[str, str]
    out: Path
    dynamic_batch: bool = False
    normalisation: Optional[Tuple[List[float], List[float]]] = None


@dataclass
class Exported:
    """The files written (`out` and any companions beside it) and the lines worth printing."""

    paths: List[Path]
    notes: List[str] = field(default_factory=list)


FORMATS = Registry("--format")  # name -> Callable[[ExportRequest], Exported]


def optional_module(name: str, purpose: str) -> ModuleType:
    """Import one of the `export` extra's packages (onnx, onnxruntime); missing, a UserError saying what to install."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise UserError(f"{purpose} needs the package `{name}`: pip install -r requirements-test.txt, "
                        f"or pip install '.[export]'") from exc


def example_clips(request: ExportRequest) -> List[torch.Tensor]:
    """Random clips of the example shape, and with a dynamic batch also one of another batch size."""
    generator = torch.Generator().manual_seed(0)
    batches = [request.input_shape[0]] + ([request.input_shape[0] + 1] if request.dynamic_batch else [])
    return [torch.randn(b, *request.input_shape[1:], generator=generator) for b in batches]


def check_equal(runtime: str, ours: Callable[[torch.Tensor], torch.Tensor],
                theirs: Callable[[torch.Tensor], torch.Tensor], clips: List[torch.Tensor]) -> str:
    """The line saying how far `theirs` is from `ours` on `clips`; beyond TOLERANCE a UserError, so an
    exported file that computes something else is never kept."""
    worst = 0.0
    for clip in clips:
        with torch.no_grad():
            expected, got = ours(clip), theirs(clip)
        if got.shape != expected.shape:
            raise UserError(f"export: {runtime} gives logits of shape {tuple(got.shape)} for a clip of "
                            f"{tuple(clip.shape)}, the model {tuple(expected.shape)}; nothing written")
        worst = max(worst, float((got - expected).abs().max() / expected.abs().max().clamp_min(1e-12)))
    shapes = " and ".join("x".join(map(str, c.shape)) for c in clips)
    if not worst <= TOLERANCE:
        raise UserError(f"export: {runtime} differs from the model by {worst:.2e} of max |logit| on random "
                        f"{shapes} clips (limit {TOLERANCE:g}); nothing written")
    return f"checked: {runtime} gives the model's logits to {worst:.1e} of max |logit| on random {shapes} clips"


def with_reference_attention(model: nn.Module) -> Tuple[nn.Module, List[str]]:
    """A copy of `model` whose attention blocks with a fused path use their reference path instead,
    and the names of those blocks with the path each had, e.g. "res4.1.nonlocal (prefix-sum)"."""
    copied = copy.deepcopy(model)
    switched = []
    for name, block in copied.attention_blocks().items():
        if getattr(block, "attention_path", "reference") != "reference":
            switched.append(f"{name} ({block.attention_path})")
            block.implementation = "reference"
    return copied, switched
