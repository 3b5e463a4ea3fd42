"""An exported ONNX file run by onnxruntime (CPU), looking like a model: float clips in, logits out.

Its class names and test view come from the file's metadata (inference/view_metadata.py), so `predict`
runs it with the same views and writes the same predictions.json as for the checkpoint it came from.
A file exported with a fixed batch size is fed that many clips at a time (the last group padded).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import torch
from torch import nn

from errors import UserError
from inference.view_metadata import read_view_metadata
from models.export.request import optional_module

SUFFIX = ".onnx"


def is_onnx(path: str | Path) -> bool:
    """Whether `path` names an exported ONNX file (by its suffix) rather than a checkpoint."""
    return Path(path).suffix.lower() == SUFFIX


class OnnxModel(nn.Module):
    """`model(clips)` for clips (N, 3, T, H, W) -> logits (N, classes), computed by onnxruntime."""

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        onnxruntime = optional_module("onnxruntime", f"running {path}")
        if not Path(path).is_file():
            raise UserError(f"ONNX file not found: {path}")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()  # as many threads as torch uses
        try:
            self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types for unreadable files
            raise UserError(f"{path} is not an ONNX model onnxruntime can load ({str(exc).splitlines()[0][:200]})") from exc
        self.settings, self.labels = read_view_metadata(self.session.get_modelmeta().custom_metadata_map, str(path))
        self._input = self.session.get_inputs()[0]
        batch = self._input.shape[0]
        self.batch = batch if isinstance(batch, int) else 0  # 0: any batch size

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        expected = self._input.shape[1:]
        if list(clips.shape[1:]) != list(expected):
            raise UserError(f"this ONNX model takes clips of {'x'.join(map(str, expected))}, not "
                            f"{'x'.join(map(str, clips.shape[1:]))}: leave data.sampling and data.transforms as exported")
        inputs = clips.detach().float().cpu().numpy()
        if not self.batch:
            return torch.from_numpy(self._run(inputs)).to(clips.device)
        outputs = []
        for start in range(0, len(inputs), self.batch):
            group = inputs[start:start + self.batch]
            padded = np.concatenate([group, np.zeros((self.batch - len(group), *group.shape[1:]), group.dtype)])
            outputs.append(self._run(padded)[: len(group)])
        return torch.from_numpy(np.concatenate(outputs)).to(clips.device)

    def _run(self, inputs: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self._input.name: inputs})[0]


def load_onnx(path: str | Path) -> tuple[OnnxModel, Dict[str, Any], List[str]]:
    """(the model, the config sections its metadata sets, its class names)."""
    model = OnnxModel(path)
    return model, model.settings, model.labels
