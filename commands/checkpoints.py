"""Checkpoints as commands read them: the model, the whole composed config, the class names."""
from __future__ import annotations

from pathlib import Path
from typing import List, Tuple

from torch import nn

from commands.config import Config, config_from_dict
from engine.checkpoint import load_checkpoint, model_from_state
from errors import UserError


def load_trained(path: str | Path) -> Tuple[nn.Module, Config, List[str]]:
    """(model in eval mode on the CPU, the checkpoint's full config, its labels); a bad file is a UserError."""
    state = load_checkpoint(path)
    return model_from_state(state, path), config_from_dict(state["config"]), list(state["labels"])


def load_predictor(path: str | Path) -> Tuple[nn.Module, Config, List[str]]:
    """`load_trained`, or for an exported `.onnx` file its onnxruntime model with the config sections and
    class names its metadata holds (inference/onnx_model.py)."""
    from inference.onnx_model import is_onnx, load_onnx

    if not is_onnx(path):
        return load_trained(path)
    model, sections, labels = load_onnx(path)
    return model, config_from_dict(sections), labels


def checkpoint_argument(cfg: Config, command: str) -> str:
    """`checkpoint=PATH` (or `test.checkpoint`), required by the inference commands."""
    path = cfg.checkpoint or cfg.test.checkpoint
    if not path:
        raise UserError(f"{command} needs a checkpoint: run.py {command} checkpoint=PATH")
    return path
