"""One test-time clip of a video file, as the model of a checkpoint sees it and as a person sees it.

The same steps as evaluation: `video.safe_read.read_clips` decodes the centre clip of the config's
sampling (scaled by the decoder to what the crop needs), the centre-crop test transform crops it, and
it is normalized as the engine does on the device.
"""
from __future__ import annotations

from typing import Tuple

import numpy as np
import torch

from video.config import DataConfig
from video.safe_read import read_clips
from video.transforms import build_test_transform, normalize


def load_clip(path: str, data: DataConfig) -> Tuple[np.ndarray, torch.Tensor]:
    """(frames uint8 (T,H,W,3) after the test-time crop, model input float (1,3,T,H,W))."""
    centre_crop = build_test_transform(data.transforms, crops=1)
    clips = read_clips(path, data, None, 1, centre_crop.source_short_side).frames
    view = centre_crop(clips[0])[0]  # (T, 3, h, w)
    clip = normalize(view.transpose(0, 1)[None], list(data.transforms.mean), list(data.transforms.std))
    return view.permute(0, 2, 3, 1).contiguous().numpy(), clip
