"""ONNX export with torch's TorchScript-based exporter at opset 17, checked against onnxruntime.

Attention blocks whose fused path has no ONNX form (the prefix-sum concatenation non-local: ONNX has no
searchsorted) are exported through their reference path instead, which computes the same logits; the
returned notes say so in one line. The metadata goes into the file's `metadata_props`.
"""
from __future__ import annotations

import contextlib
import os
import sys
import warnings
from pathlib import Path
from typing import Iterator, List

import torch
from torch import nn

from errors import UserError
from models.export.request import (FORMATS, Exported, ExportRequest, check_equal, example_clips, optional_module,
                                   with_reference_attention)

OPSET = 17
INPUT, OUTPUT = "clip", "logits"


@contextlib.contextmanager
def _native_stdout_dropped() -> Iterator[None]:
    """Drop what native code writes to file descriptor 1: a failed export dumps its whole graph there."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 1)
            yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def _write(model: nn.Module, request: ExportRequest, clip: torch.Tensor) -> None:
    axes = {INPUT: {0: "batch"}, OUTPUT: {0: "batch"}} if request.dynamic_batch else None
    with warnings.catch_warnings(), _native_stdout_dropped():  # tracer warnings: the result is checked instead
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (clip,), str(request.out), dynamo=False, opset_version=OPSET,
                          input_names=[INPUT], output_names=[OUTPUT], dynamic_axes=axes)


def _export_with_fallback(request: ExportRequest, clip: torch.Tensor) -> List[str]:
    """Export the model as it is, or where an operator has no ONNX form, with reference attention paths."""
    try:
        _write(request.model, request, clip)
        return []
    except torch.onnx.errors.OnnxExporterError as exc:
        reference, switched = with_reference_attention(request.model)
        if not switched:
            raise UserError(f"export: {str(exc).splitlines()[0]}") from exc
        _write(reference, request, clip)
        return [f"export: {str(exc).splitlines()[0].rstrip('.')}; exported the reference path of "
                f"{', '.join(switched)} instead (same logits, the full affinity matrix in memory)"]


def _add_metadata(path: Path, metadata: dict) -> None:
    onnx = optional_module("onnx", "--format onnx")
    proto = onnx.load(str(path))
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(path))


@FORMATS.register("onnx")
def export_onnx(request: ExportRequest) -> Exported:
    """One `.onnx` file; its logits from onnxruntime (CPU) are checked against the model's."""
    onnxruntime = optional_module("onnxruntime", "--format onnx")
    clips = example_clips(request)
    notes = _export_with_fallback(request, clips[0])
    _add_metadata(request.out, request.metadata)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()  # as many as torch: no oversubscription
    session = onnxruntime.InferenceSession(str(request.out), options, providers=["CPUExecutionProvider"])
    run = lambda clip: torch.from_numpy(session.run(None, {INPUT: clip.numpy()})[0])  # noqa: E731
    notes.append(check_equal(f"onnxruntime {onnxruntime.__version__}", request.model, run, clips))
    return Exported([request.out], notes)
