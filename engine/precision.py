"""Mixed precision: bf16 autocast on CPU and GPU, fp16 autocast with a gradient scaler on GPU only."""
from __future__ import annotations

import contextlib
from typing import ContextManager, Dict

import torch

from errors import UserError

AMP_DTYPES: Dict[str, torch.dtype | None] = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def check_amp(amp: str, device: torch.device) -> None:
    """Reject an unknown `trainer.amp` or fp16 without a GPU."""
    if amp not in AMP_DTYPES:
        raise UserError(f"trainer.amp={amp!r}: expected one of {sorted(AMP_DTYPES)}")
    if amp == "fp16" and device.type != "cuda":
        raise UserError("trainer.amp=fp16 needs a CUDA device; use trainer.amp=bf16 on the CPU")


def autocast(amp: str, device: torch.device) -> ContextManager:
    """The autocast context for `trainer.amp` (a no-op for `none`)."""
    dtype = AMP_DTYPES[amp]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def grad_scaler(amp: str, device: torch.device) -> torch.amp.GradScaler:
    """A loss scaler, active only for fp16 (bf16 has the range of fp32 and needs none)."""
    return torch.amp.GradScaler(device.type, enabled=amp == "fp16")
