"""Test videos whose frames carry their own index as a barcode, so a test can check which frame it got."""
from pathlib import Path

import numpy as np

from video.encode import write_video

BITS = 12
BAR = 8  # pixels per bit


def barcode_frames(count: int, height: int = 32) -> np.ndarray:
    """uint8 frames (count, height, BITS*BAR, 3): bit b of the index is a white or black band."""
    bits = (np.arange(count)[:, None] >> np.arange(BITS)[None, :]) & 1
    bands = np.repeat(bits * 255, BAR, axis=1).astype(np.uint8)
    return np.broadcast_to(bands[:, None, :, None], (count, height, BITS * BAR, 3)).copy()


def read_barcodes(frames: np.ndarray) -> list[int]:
    """The index carried by each decoded frame (N, H, W, 3), read at the centre of each band (so
    frames scaled to any width still read)."""
    centres = ((np.arange(BITS) + 0.5) * frames.shape[2] / BITS).astype(int)
    bits = frames[:, :, centres].mean(axis=(1, 3)) > 127
    return [int(row @ (1 << np.arange(BITS))) for row in bits]


def write_barcode_video(path: Path, count: int, keyframe_interval: int = 16, fps: float = 25) -> Path:
    write_video(path, barcode_frames(count), fps, keyframe_interval=keyframe_interval)
    return path
