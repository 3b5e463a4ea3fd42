"""One test-time clip of a video file, as the model of a checkpoint sees it and as a person sees it.

The same steps as evaluation: `video.sampling` picks the centre clip of the config's sampling, the
centre-crop test transform resizes and crops it, and it is normalized as the engine does on the device.
"""
from __future__ import annotations

from typing import Tuple

import numpy as np
import torch

from video.config import DataConfig
from video.decode import open_video
from video.sampling import sample_clips
from video.transforms import build_test_transform, normalize


def load_clip(path: str, data: DataConfig) -> Tuple[np.ndarray, torch.Tensor]:
    """(frames uint8 (T,H,W,3) after the test-time crop, model input float (1,3,T,H,W))."""
    with open_video(path, data.backend, data.decode_threads) as reader:
        indices = sample_clips(reader.num_frames, data.sampling, None, 1, reader.fps)[0]
        frames = torch.from_numpy(reader.get_frames(indices))  # (T, H, W, 3)
    view = build_test_transform(data.transforms, crops=1)(frames.permute(0, 3, 1, 2))[0]  # (T, 3, h, w)
    clip = normalize(view.transpose(0, 1)[None], list(data.transforms.mean), list(data.transforms.std))
    return view.permute(0, 2, 3, 1).contiguous().numpy(), clip
