"""TorchScript export (`torch.jit.trace`): one file that `torch.jit.load` runs in Python or C++ (libtorch)
without this toolkit; the metadata travels as the extra file `metadata.json`."""
from __future__ import annotations

import json
import warnings

import torch

from models.export.request import FORMATS, Exported, ExportRequest, check_equal, example_clips

METADATA_FILE = "metadata.json"


@FORMATS.register("torchscript")
def export_torchscript(request: ExportRequest) -> Exported:
    """Trace the model on the example clip, save it, load it back and check its logits against the model's."""
    clips = example_clips(request)
    with warnings.catch_warnings(), torch.no_grad():  # tracer and deprecation warnings: checked below instead
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(request.model, (clips[0],), check_trace=False)
        torch.jit.save(traced, str(request.out), _extra_files={METADATA_FILE: json.dumps(request.metadata)})
        loaded = torch.jit.load(str(request.out), map_location="cpu")
    note = check_equal(f"torch.jit.load (torch {torch.__version__})", request.model, loaded, clips)
    return Exported([request.out], [note])
