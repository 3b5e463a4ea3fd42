"""Checkpoints: atomic writes, full training state (RNG included) for exact resume, and loading.

A checkpoint is a dict of plain types and tensors (loadable with `weights_only=True`): model,
optimizer, scheduler, scaler, step, sampler epoch and position, every rank's RNG states, the resolved
config and the label names. Anything wrong with a checkpoint file is a `UserError` naming the file.
"""
from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any, Dict, List, Tuple

import numpy as np
import torch
from omegaconf import OmegaConf
from torch import nn

from engine.config import ExperimentConfig, experiment_from_dict
from errors import UserError

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
    """Read a checkpoint onto the CPU; a missing, unreadable or foreign file is a UserError."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, pickle errors, random bytes: all mean "corrupt"
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"checkpoint {path} is corrupt or not a checkpoint ({reason[:200]})") from exc
    if not isinstance(state, dict) or any(key not in state for key in REQUIRED_KEYS):
        raise UserError(f"checkpoint {path} is not a checkpoint of this toolkit (expected keys {REQUIRED_KEYS})")
    if state["format"] != FORMAT:
        raise UserError(f"checkpoint {path} has format {state['format']}, this version reads {FORMAT}")
    return state


def load_model_state(model: nn.Module, state: Dict[str, Any], path: str | Path) -> None:
    """Load weights strictly; a checkpoint made for another architecture is a one-line UserError."""
    result = model.state_dict()
    weights = state["model"]
    missing = sorted(set(result) - set(weights))
    unexpected = sorted(set(weights) - set(result))
    wrong_shape = sorted(k for k in set(result) & set(weights) if result[k].shape != weights[k].shape)
    if missing or unexpected or wrong_shape:
        parts = [f"{label} {names[:3]}{' ...' if len(names) > 3 else ''}"
                 for label, names in (("missing", missing), ("unexpected", unexpected),
                                      ("wrong shape", wrong_shape)) if names]
        raise UserError(f"checkpoint {path} does not match the model of this config: {'; '.join(parts)}")
    model.load_state_dict(weights)


def init_weights_from(model: nn.Module, path: str | Path) -> str:
    """Start `model` from a checkpoint's weights (fine-tuning); a classifier whose shapes differ (another
    class count) keeps its fresh initialisation. Returns the line that says what was loaded."""
    weights = load_checkpoint(path)["model"]
    target = model.state_dict()
    head = sorted(k for k in target if k.startswith("head.") and k in weights and weights[k].shape != target[k].shape)
    kept = {k: v for k, v in weights.items() if k not in head}
    missing = sorted(set(target) - set(kept) - set(head))
    unexpected = sorted(set(kept) - set(target))
    wrong = sorted(k for k in set(kept) & set(target) if kept[k].shape != target[k].shape)
    if missing or unexpected or wrong:
        parts = [f"{label} {names[:3]}{' ...' if len(names) > 3 else ''}"
                 for label, names in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)) if names]
        raise UserError(f"trainer.init_from={path} does not fit the model of this config: {'; '.join(parts)}")
    model.load_state_dict({**target, **kept})
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


def model_from_state(state: Dict[str, Any], path: str | Path) -> nn.Module:
    """The model a loaded checkpoint describes (its config's `model.*`, its labels), weights loaded, in eval mode."""
    from models.build import build_model  # the models package is only needed to rebuild

    model = build_model(experiment_from_dict(state["config"]).model, len(state["labels"]))
    load_model_state(model, state, path)
    return model.eval()


def load_for_inference(path: str | Path) -> Tuple[nn.Module, ExperimentConfig, List[str]]:
    """(model in eval mode on the CPU, its config, its class names) from a checkpoint file."""
    state = load_checkpoint(path)
    return model_from_state(state, path), experiment_from_dict(state["config"]), list(state["labels"])
