"""Checkpoints: atomic writes, full training state (RNG included) for exact resume, and loading.

A checkpoint is a dict of plain types and tensors (loadable with `weights_only=True`): model,
optimizer, scheduler, scaler, step, sampler epoch and position, every rank's RNG states, the resolved
config and the label names. Anything wrong with a checkpoint file is a `UserError` naming the file.
"""
from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any, Dict, List, Tuple, Type, TypeVar

import numpy as np
import torch
from omegaconf import OmegaConf
from torch import nn

from engine.config import ExperimentConfig, config_from_dict
from errors import UserError
from models.weights import read_torch_file, state_dict_mismatch

C = TypeVar("C", bound=ExperimentConfig)

FORMAT = 1
REQUIRED_KEYS = ("format", "model", "config", "labels", "step")


def rng_state() -> Dict[str, Any]:
    """Every random generator of this process (python, numpy, torch CPU and CUDA) as plain data."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": [name, keys.tolist(), pos, has_gauss, cached],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Dict[str, Any]) -> None:
    """Restore what `rng_state` captured."""
    random.setstate(state["python"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(state: Dict[str, Any], path: Path) -> None:
    """Write `state` to `path` atomically: a temporary file in the same folder, then a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as handle:
            torch.save(state, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_checkpoint(path: str | Path) -> Dict[str, Any]:
    """Read a checkpoint of ours onto the CPU; a missing, unreadable or foreign file is a UserError."""
    state = read_torch_file(path, "checkpoint")
    if not isinstance(state, dict) or any(key not in state for key in REQUIRED_KEYS):
        raise UserError(f"checkpoint {path} is not a checkpoint of this toolkit (expected keys {REQUIRED_KEYS})")
    if state["format"] != FORMAT:
        raise UserError(f"checkpoint {path} has format {state['format']}, this version reads {FORMAT}")
    return state


def load_model_state(model: nn.Module, state: Dict[str, Any], path: str | Path) -> None:
    """Load weights strictly; a checkpoint made for another architecture is a one-line UserError."""
    mismatch = state_dict_mismatch(model.state_dict(), state["model"])
    if mismatch:
        raise UserError(f"checkpoint {path} does not match the model of this config: {mismatch}")
    model.load_state_dict(state["model"])


def init_weights_from(model: nn.Module, path: str | Path) -> str:
    """Start `model` from a checkpoint's weights (fine-tuning); a classifier whose shapes differ (another
    class count) keeps its fresh initialisation. Returns the line that says what was loaded."""
    weights = load_checkpoint(path)["model"]
    target = model.state_dict()
    head = sorted(k for k in target if k.startswith("head.") and k in weights and weights[k].shape != target[k].shape)
    mismatch = state_dict_mismatch(target, weights, ignore=head)
    if mismatch:
        raise UserError(f"trainer.init_from={path} does not fit the model of this config: {mismatch}")
    model.load_state_dict({**target, **{k: v for k, v in weights.items() if k not in head}})
    if head:
        old, new = weights[head[0]].shape[0], target[head[0]].shape[0]
        return (f"initialised from {path}; its classifier ({old} classes) was re-initialised for {new} classes "
                f"({', '.join(head)})")
    return f"initialised from {path}, classifier included"


def config_to_container(cfg: ExperimentConfig) -> Dict[str, Any]:
    return OmegaConf.to_container(cfg, resolve=True)


def resolve_resume(spec: str, checkpoint_dir: Path) -> Path | None:
    """The checkpoint to resume from: empty -> none, `auto` -> last.pt when present, else the path."""
    if not spec:
        return None
    if spec == "auto":
        last = checkpoint_dir / "last.pt"
        return last if last.is_file() else None
    return Path(spec)


def load_trained(path: str | Path, schema: Type[C] = ExperimentConfig) -> Tuple[nn.Module, C, List[str]]:
    """(model in eval mode on the CPU, the stored config typed by `schema`, the class names) of a checkpoint:
    the one way a checkpoint becomes a model. The network is the checkpoint's own (its `model.*`)."""
    from models.build import build_model  # the models package is only needed to rebuild

    state = load_checkpoint(path)
    cfg = config_from_dict(state["config"], schema)
    model = build_model(cfg.model, len(state["labels"]))
    load_model_state(model, state, path)
    return model.eval(), cfg, list(state["labels"])
