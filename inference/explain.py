"""`predict --explain`: a Grad-CAM picture and video of one test clip of a video, for the predicted class
(or a named one): DIR/<stem>_gradcam.png (frames with the map, a row) and DIR/<stem>_gradcam.mp4."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Sequence

import numpy as np
from torch import nn

from inference.clip_input import load_clip
from inference.config import PredictConfig
from inference.gradcam import grad_cam
from inference.render import heat_overlay, save_map_grid
from errors import UserError
from video.config import DataConfig
from video.encode import write_video

MAX_GRID_FRAMES = 8  # frames shown in the PNG (evenly spaced); the MP4 has every sampled frame


def class_index(labels: Sequence[str], name: str | None) -> int | None:
    """The index of `--class NAME`, or None for the predicted class."""
    if name is None:
        return None
    if name not in labels:
        raise UserError(f"--class '{name}' is not one of the model's {len(labels)} classes "
                        f"(e.g. {', '.join(labels[:5])})")
    return list(labels).index(name)


def explain_video(model: nn.Module, path: str, data: DataConfig, labels: Sequence[str], options: PredictConfig,
                  out_dir: Path, class_name: str | None = None) -> Dict[str, str]:
    """Write the Grad-CAM PNG and MP4 of the centre test clip of `path`; returns their paths and the class."""
    frames, clip = load_clip(path, data)  # uint8 (T, H, W, 3) as cropped, and the model input
    cam = grad_cam(model, clip.to(next(model.parameters()).device), options.gradcam_layer, class_index(labels, class_name))
    stem = Path(path).stem
    picked = np.unique(np.linspace(0, len(frames) - 1, min(len(frames), MAX_GRID_FRAMES)).round().astype(int))
    title = (f"Grad-CAM of {cam.layer} (grid {'x'.join(map(str, cam.grid))}) for '{labels[cam.class_index]}' "
             f"(score {cam.score:.2f})")
    png = save_map_grid(out_dir / f"{stem}_gradcam.png", frames[picked], [f"frame {t}" for t in picked],
                        [(cam.layer, cam.heat[picked], 1.0)], title)
    mp4 = out_dir / f"{stem}_gradcam.mp4"
    write_video(mp4, [heat_overlay(frame, heat, 1.0) for frame, heat in zip(frames, cam.heat)], options.gradcam_fps)
    return {"gradcam_png": str(png), "gradcam_mp4": str(mp4), "class": labels[cam.class_index],
            "layer": cam.layer}
