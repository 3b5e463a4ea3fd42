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


def faststart_copy(source: Path, target: Path) -> Path:
    """The video stream of `source` remuxed (no re-encoding) into an mp4 with its index first, so that
    cutting the file's tail leaves a header that promises frames the file no longer holds."""
    import av

    with av.open(str(source)) as inp, av.open(str(target), "w", options={"movflags": "faststart"}) as out:
        stream = inp.streams.video[0]
        copy = out.add_stream_from_template(stream)
        for packet in inp.demux(stream):
            if packet.dts is not None:
                packet.stream = copy
                out.mux(packet)
    return target
