"""Turn a loader batch's uint8 clips into the model's float input, on the device."""
from __future__ import annotations

import torch

from video.config import DataConfig
from video.transforms import normalize


def model_input(clip: torch.Tensor, device: torch.device, data: DataConfig, channels_last: bool) -> torch.Tensor:
    """Move uint8 clips (...,3,T,H,W) to the device, then normalize there (clips travel as uint8)."""
    clip = clip.to(device, non_blocking=True)
    clip = normalize(clip, list(data.transforms.mean), list(data.transforms.std))
    if channels_last and clip.ndim == 5:
        clip = clip.contiguous(memory_format=torch.channels_last_3d)
    return clip
