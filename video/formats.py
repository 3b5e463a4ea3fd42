"""The dataset formats behind `data.format`: a folder (`data.root`) or tar shards (`data.shards`,
`data.val_shards`, written by `prep shards`), opened the same way for training, validation and tests."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Union

from torch.utils.data import DataLoader, IterableDataset

from errors import UserError
from video.config import DataConfig
from video.dataset import VideoDataset
from video.shard_stream import ShardStream

Dataset = Union[VideoDataset, ShardStream]


def _folders(cfg: DataConfig, split: str, train: bool, rank: int, world_size: int, seed: int, clips: int,
             crops: int) -> VideoDataset:
    return VideoDataset(cfg.root, split, cfg, train, clips, crops)


def _shards(cfg: DataConfig, split: str, train: bool, rank: int, world_size: int, seed: int, clips: int,
            crops: int) -> ShardStream:
    option = "data.shards" if split == "train" else "data.val_shards"
    pattern = cfg.shards if split == "train" else cfg.val_shards
    return ShardStream(pattern, option, split, cfg, train, rank, world_size, seed, clips, crops)


FORMATS: Dict[str, Callable[..., Dataset]] = {"folders": _folders, "shards": _shards}


def open_split(cfg: DataConfig, split: str, train: bool, rank: int = 0, world_size: int = 1, seed: int = 0,
               clips: int = 1, crops: int = 1) -> Dataset:
    """The dataset of `split` in the configured format, for `rank` of `world_size` (shards split by rank
    here; folders in the loader's sampler)."""
    if cfg.format not in FORMATS:
        raise UserError(f"data.format={cfg.format!r}: choose from {sorted(FORMATS)}")
    return FORMATS[cfg.format](cfg, split, train, rank, world_size, seed, clips, crops)


def describe_source(cfg: DataConfig, split: str) -> str:
    """Where `split` is read from, for messages."""
    if cfg.format == "shards":
        return cfg.shards if split == "train" else cfg.val_shards
    return str(Path(cfg.root))


def set_epoch(loader: DataLoader, epoch: int, start: int = 0) -> None:
    """Choose the epoch of a training loader of either format, beginning after `start` samples of this rank."""
    positioned = loader.dataset if isinstance(loader.dataset, IterableDataset) else loader.sampler
    positioned.set_epoch(epoch, start)


def check_resume(cfg: DataConfig, saved: Mapping[str, Any], saved_world_size: int, world_size: int,
                 position: int, path: Path) -> None:
    """Shards resume mid-epoch only with the layout that wrote the checkpoint (their order depends on
    it); a UserError naming both layouts otherwise. Folders resume under any layout (engine/train.py)."""
    if cfg.format != "shards" or position == 0:
        return
    keys = ("batch_size", "num_workers", "shard_buffer")
    then = (saved_world_size, *(saved.get(key) for key in keys))
    now = (world_size, *(getattr(cfg, key) for key in keys))
    if then != now:
        names = ("ranks", *(f"data.{key}" for key in keys))
        differ = ", ".join(f"{name} {a} -> {b}" for name, a, b in zip(names, then, now) if a != b)
        raise UserError(f"checkpoint {path} stopped in the middle of epoch with data.format=shards, whose order "
                        f"depends on the layout: {differ}; resume with the checkpoint's layout")
