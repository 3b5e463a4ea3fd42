"""A dataset folder as a torch Dataset: decode, sample, transform; broken videos are counted.

Folder format: `labels.txt` (one class per line, line number = class index), `train.csv` / `val.csv` /
`test.csv` with header `path,label` (paths relative to the folder or absolute), and optionally
`flip_pairs.txt` (lines `class_a,class_b`: a horizontal flip turns one into the other).

Items are dicts: `clip` uint8 (3, T, H, W) in training, (V, 3, T, H, W) in evaluation with
V = clips x crops; `label`; `index` (the sample actually returned); `valid`; `failed` ("path: reason"
for each video that could not be decoded on the way, see video/safe_read.py); `truncated` ("path: ..."
for a truncated video used with the frames it has). A training item may be asked for by index or by
the key `(index, seed, epoch)` that the training sampler yields: its augmentation and any replacement
draw from a generator seeded by that key, so they repeat exactly whatever the number of workers.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Callable, Dict, List, Tuple, TypeVar, Union

import numpy as np
import torch
from torch.utils.data import Dataset

from errors import UserError
from video.config import DataConfig
from video.decode import VideoDecodeError
from video.safe_read import ClipRead, guarded, read_clips
from video.sampling import check_sampling, clip_length
from video.transforms import build_test_transform, build_train_transform

Key = Union[int, Tuple[int, int, int]]
T = TypeVar("T")


def read_labels(root: Path) -> List[str]:
    """Class names from `labels.txt`, in class-index order."""
    path = root / "labels.txt"
    if not path.is_file():
        raise UserError(f"dataset {root}: labels.txt is missing (data.root)")
    labels = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    if not labels or duplicates:
        raise UserError(f"{path}: needs one distinct class name per line (repeated: {duplicates})")
    return labels


def read_split(root: Path, split: str, labels: List[str]) -> List[Tuple[str, int]]:
    """(absolute path, class index) for every row of `<split>.csv`."""
    path = root / f"{split}.csv"
    if not path.is_file():
        raise UserError(f"dataset {root}: {split}.csv is missing")
    class_index = {label: index for index, label in enumerate(labels)}
    samples = []
    with open(path, newline="") as file:
        reader = csv.reader(file)
        if next(reader, None) != ["path", "label"]:
            raise UserError(f"{path}: the first line must be the header 'path,label'")
        for line, row in enumerate(reader, start=2):
            if len(row) != 2 or row[1] not in class_index:
                raise UserError(f"{path}:{line}: expected 'path,label' with a label from labels.txt, got {row}")
            samples.append((str(root / row[0]), class_index[row[1]]))
    if not samples:
        raise UserError(f"{path}: lists no videos")
    return samples


def read_flip_pairs(root: Path, labels: List[str]) -> List[Tuple[int, int]]:
    """Class index pairs that a horizontal flip exchanges (none when `flip_pairs.txt` is absent)."""
    path = root / "flip_pairs.txt"
    if not path.is_file():
        return []
    pairs = []
    for line, text in enumerate(path.read_text().splitlines(), start=1):
        names = [name.strip() for name in text.split(",")] if text.strip() else []
        if names and (len(names) != 2 or not set(names) <= set(labels)):
            raise UserError(f"{path}:{line}: expected two class names from labels.txt, got '{text}'")
        if names:
            pairs.append((labels.index(names[0]), labels.index(names[1])))
    return pairs


class VideoDataset(Dataset):
    """Clips of the videos of one split; see the module docstring for the item format."""

    def __init__(self, root: Union[str, Path], split: str, cfg: DataConfig, train: bool, clips: int = 1,
                 crops: int = 1):
        if train and (clips, crops) != (1, 1):
            raise ValueError("training takes one clip and one crop per video")
        if clips < 1:
            raise UserError(f"test.clips={clips}: must be at least 1")
        self.root, self.cfg, self.train, self.clips = Path(root), cfg, train, clips
        if not self.root.is_dir():
            raise UserError(f"dataset folder {self.root} does not exist (data.root)")
        check_sampling(cfg.sampling)
        self.labels = read_labels(self.root)
        self.samples = read_split(self.root, split, self.labels)
        flip_pairs = read_flip_pairs(self.root, self.labels)
        if train:
            self.transform = build_train_transform(cfg.transforms, len(self.labels), flip_pairs)
        else:
            self.test_views = build_test_transform(cfg.transforms, crops, flip_pairs)
        self.views = clips * crops

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: Key) -> Dict:
        index, seed, epoch = key if isinstance(key, tuple) else (int(key), 0, 0)
        if self.train:
            return self._train_item(index, np.random.default_rng([seed, epoch, index]))
        return self._test_item(index)

    def _train_item(self, index: int, rng: np.random.Generator) -> Dict:
        """A transformed clip; an undecodable video is replaced by a random other one, and counted."""
        return train_item(index, self.decode_train_clip, lambda draw: int(draw.integers(len(self.samples))),
                          int, rng, self.cfg.max_replacements)

    def decode_train_clip(self, index: int, rng: np.random.Generator) -> Tuple[torch.Tensor, int, ClipRead]:
        """Video `index` as training sees it: (transformed clip (T, 3, h, w), label, what the read noticed);
        a VideoDecodeError when no clip can be made of it."""
        path, label = self.samples[index]
        return train_clip(path, label, self.cfg, self.transform, rng)

    def _test_item(self, index: int) -> Dict:
        """All views of one video; an undecodable video gives a zero clip with `valid=False`."""
        path, label = self.samples[index]
        return views_item(path, label, index, self.cfg, self.clips, self.views, self.test_views)


def train_clip(path: str, label: int, cfg: DataConfig, transform, rng: np.random.Generator
               ) -> Tuple[torch.Tensor, int, ClipRead]:
    """The video file `path` as training sees it: (transformed clip (T, 3, h, w), label, what the read
    noticed); a VideoDecodeError when no clip can be made of it."""
    read = read_clips(path, cfg, rng, short_side=transform.source_short_side)
    clip, label = guarded(path, lambda: transform(read.frames[0], label, rng))
    return clip, label, read


def train_item(candidate: T, decode: Callable[[T, np.random.Generator], Tuple[torch.Tensor, int, ClipRead]],
               replace: Callable[[np.random.Generator], T], index_of: Callable[[T], int], rng: np.random.Generator,
               max_replacements: int) -> Dict:
    """The training item of `candidate`; while it cannot be decoded, `replace(rng)` draws another (at most
    `max_replacements` times), each failure listed in `failed`."""
    failed: List[str] = []
    for _ in range(max_replacements + 1):
        try:
            clip, label, read = decode(candidate, rng)
        except VideoDecodeError as exc:
            failed.append(f"{exc.path}: {exc.reason}")
            candidate = replace(rng)
            continue
        return dict(clip=clip.transpose(0, 1).contiguous(), label=label, index=index_of(candidate), valid=True,
                    failed=failed, truncated=[read.truncated] if read.truncated else [])
    raise UserError(f"{len(failed)} videos in a row could not be decoded (data.max_replacements="
                    f"{max_replacements}); the last: {failed[-1]}")


def views_item(path: str, label: int, index: int, cfg: DataConfig, clips: int, views: int, test_views,
               name: str = "") -> Dict:
    """The `views` views (clips x crops) of the video file `path` as item `index`; an undecodable video
    gives a zero clip with `valid=False`. Messages call the video `name` (default: its path)."""
    name = name or path
    try:
        read = read_clips(path, cfg, None, clips, test_views.source_short_side)
        stacked = guarded(path, lambda: make_views(read.frames, test_views))
    except VideoDecodeError as exc:
        return invalid_item(label, index, cfg, views, f"{name}: {exc.reason}")
    return dict(clip=stacked, label=label, index=index, valid=True, failed=[],
                truncated=[read.truncated.replace(path, name, 1)] if read.truncated else [])


def invalid_item(label: int, index: int, cfg: DataConfig, views: int, failure: str) -> Dict:
    """The evaluation item of a video that gave no clip: zero views, `valid=False`, `failure` listed."""
    size = cfg.transforms.crop_size
    clip = torch.zeros(views, 3, clip_length(cfg.sampling), size, size, dtype=torch.uint8)
    return dict(clip=clip, label=label, index=index, valid=False, failed=[failure], truncated=[])


def make_views(clips: torch.Tensor, test_views) -> torch.Tensor:
    """Every test view (crops) of every clip (clips, T, 3, H, W): uint8 (V, 3, T, h, w)."""
    views = torch.cat([test_views(clip) for clip in clips])  # (V, T, 3, h, w)
    return views.transpose(1, 2).contiguous()

