"""The test view an exported model is made for, as metadata written into the file and read back from
it, so an exported model says which clips it takes and what its outputs mean (docs/export.md)."""
from __future__ import annotations

import copy
import json
from typing import Any, Dict, List, Mapping, Sequence, Tuple

from omegaconf import DictConfig, OmegaConf

from errors import UserError

FORMAT_KEY, FORMAT = "video_nl.metadata", "1"
LABELS_KEY, SHAPE_KEY, MODEL_KEY = "labels", "input.shape", "model"
# config keys that decide which views a video gives and how predictions are listed
VIEW_KEYS = ("data.backend", "data.sampling.mode", "data.sampling.num_frames", "data.sampling.stride",
             "data.sampling.num_segments", "data.sampling.target_fps", "data.sampling.short_video",
             "data.transforms.test_scale", "data.transforms.crop_size", "data.transforms.mean",
             "data.transforms.std", "test.clips", "test.crops", "predict.window_stride",
             "predict.window_length", "predict.top_k", "predict.timeline_classes")


def frames_key(cfg: DictConfig) -> str:
    """The sampling key that sets T: segments for TSN sampling, frames for dense clips."""
    return "num_segments" if cfg.data.sampling.mode == "segments" else "num_frames"


def export_view(cfg: DictConfig, frames: int | None, size: int | None) -> DictConfig:
    """`cfg` with T frames (or segments) and S x S crops; the short side before cropping keeps its ratio
    to the crop. None keeps the checkpoint's own test view."""
    for flag, value in (("--frames", frames), ("--size", size)):
        if value is not None and value < 1:
            raise UserError(f"{flag}={value} must be at least 1")
    view = copy.deepcopy(cfg)
    if frames is not None:
        view.data.sampling[frames_key(view)] = frames
    if size is not None:
        transforms = view.data.transforms
        transforms.test_scale = max(size, round(transforms.test_scale * size / transforms.crop_size))
        transforms.crop_size = size
    return view


def clip_shape(cfg: DictConfig) -> Tuple[int, int, int, int, int]:
    """(1, 3, T, S, S): one clip of the test view."""
    size = cfg.data.transforms.crop_size
    return 1, 3, cfg.data.sampling[frames_key(cfg)], size, size


def view_metadata(cfg: DictConfig, labels: Sequence[str], shape: Sequence[int], dynamic_batch: bool) -> Dict[str, str]:
    """String metadata: the class names, the view keys (JSON values), the input shape, the model config."""
    values: Dict[str, Any] = {key: OmegaConf.select(cfg, key) for key in VIEW_KEYS}
    values = {key: OmegaConf.to_container(v) if OmegaConf.is_config(v) else v for key, v in values.items()}
    dims = ["batch" if dynamic_batch else str(shape[0])] + [str(d) for d in shape[1:]]
    return {FORMAT_KEY: FORMAT, LABELS_KEY: json.dumps(list(labels)), SHAPE_KEY: ",".join(dims),
            MODEL_KEY: json.dumps(OmegaConf.to_container(cfg.model, resolve=True)),
            **{key: json.dumps(value) for key, value in values.items()}}


def read_view_metadata(props: Mapping[str, str], source: str) -> Tuple[Dict[str, Any], List[str]]:
    """(config sections as nested dicts, class names) from what `view_metadata` wrote; a file without
    them is a UserError naming `source`."""
    missing = [key for key in (FORMAT_KEY, LABELS_KEY, *VIEW_KEYS) if key not in props]
    if missing:
        raise UserError(f"{source} was not written by `run.py export` (its metadata lacks {', '.join(missing[:3])}"
                        f"{' ...' if len(missing) > 3 else ''})")
    if props[FORMAT_KEY] != FORMAT:
        raise UserError(f"{source} has metadata format {props[FORMAT_KEY]}, this version reads {FORMAT}")
    sections: Dict[str, Any] = {}
    try:
        for key in VIEW_KEYS:
            *parents, leaf = key.split(".")
            node = sections
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = json.loads(props[key])
        labels = json.loads(props[LABELS_KEY])
    except json.JSONDecodeError as exc:
        raise UserError(f"{source}: metadata entry is not JSON ({exc})") from exc
    return sections, [str(label) for label in labels]
