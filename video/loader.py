"""DataLoaders over a `VideoDataset`: worker processes, rank sharding, uint8 batches.

Training: each epoch a seeded permutation is cut into disjoint, equal shards, one per rank
(`loader.sampler.set_epoch(e, start)` picks the epoch and where in this rank's shard to begin, so a
resumed epoch skips what was consumed without decoding it); the last incomplete batch is dropped. Evaluation:
every index exactly once across ranks, no padding duplicates (shards may differ by one video).
Workers decode with the configured decoder threads, run single-threaded torch ops, and seed their
global RNGs per worker; the dataset's own randomness comes from the sampler's keys. Workers ignore the
scheduler's stop signals (SIGTERM, SIGUSR1): the main process finishes its step and stops them.
"""
from __future__ import annotations

import random
import signal
from typing import Dict, Iterator, List, Tuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, Sampler

from errors import UserError
from video.config import DataConfig, fixed_batch_size


def _check_rank(rank: int, world_size: int) -> None:
    if world_size < 1 or not 0 <= rank < world_size:
        raise UserError(f"rank {rank} is outside a world of {world_size} processes")


class TrainSampler(Sampler):
    """Shuffled disjoint shards of equal size; yields keys `(index, seed, epoch)` for the dataset."""

    def __init__(self, size: int, rank: int = 0, world_size: int = 1, seed: int = 0):
        _check_rank(rank, world_size)
        self.size, self.rank, self.world_size, self.seed = size, rank, world_size, seed
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Choose the permutation (and the augmentation seeds) of this epoch, and begin at position
        `start` of this rank's shard: the shard's first `start` samples are not yielded."""
        self.epoch, self.start = epoch, start

    def shard_size(self) -> int:
        """Samples of one rank's whole shard of an epoch."""
        return self.size // self.world_size

    def __len__(self) -> int:
        return max(self.shard_size() - self.start, 0)

    def __iter__(self) -> Iterator[Tuple[int, int, int]]:
        order = np.random.default_rng([self.seed, self.epoch]).permutation(self.size)
        shard = order[: self.shard_size() * self.world_size][self.rank:: self.world_size]
        return iter([(int(index), self.seed, self.epoch) for index in shard[self.start:]])


class EvalSampler(Sampler):
    """Indices rank, rank + world_size, ...: each index on exactly one rank, none repeated."""

    def __init__(self, size: int, rank: int = 0, world_size: int = 1):
        _check_rank(rank, world_size)
        self.indices = range(rank, size, world_size)

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)


def collate(items: List[Dict]) -> Dict:
    """Stack clips (uint8), labels and indices (int64), validity (bool); concatenate failures."""
    return dict(
        clip=torch.stack([item["clip"] for item in items]),
        label=torch.tensor([item["label"] for item in items], dtype=torch.int64),
        index=torch.tensor([item["index"] for item in items], dtype=torch.int64),
        valid=torch.tensor([item["valid"] for item in items], dtype=torch.bool),
        failed=[entry for item in items for entry in item["failed"]],
        truncated=[entry for item in items for entry in item["truncated"]],
    )


def _init_worker(worker_id: int) -> None:
    """One torch thread per worker (decoding is the parallelism), distinct global RNG seeds, and deaf to
    the stop signals a scheduler may send to the whole process group."""
    torch.set_num_threads(1)
    for sig in (signal.SIGTERM, signal.SIGUSR1):
        signal.signal(sig, signal.SIG_IGN)
    seed = torch.initial_seed() % 2**32  # torch gives each worker its own base seed + worker id
    random.seed(seed)
    np.random.seed(seed)


def build_loader(dataset: Dataset, cfg: DataConfig, train: bool, rank: int = 0, world_size: int = 1,
                 seed: int = 0, device_type: str = "cpu") -> DataLoader:
    """A DataLoader yielding dict batches (see `collate`); pinned memory only for a CUDA device."""
    if fixed_batch_size(cfg) < 1 or cfg.num_workers < 0:
        raise UserError(f"data.batch_size={cfg.batch_size} must be >= 1 and data.num_workers="
                        f"{cfg.num_workers} >= 0")
    if isinstance(dataset, IterableDataset):
        sampler = None  # a stream (video/shard_stream.py) splits by rank and worker itself
    elif train:
        sampler = TrainSampler(len(dataset), rank, world_size, seed)
    else:
        sampler = EvalSampler(len(dataset), rank, world_size)
    workers = cfg.num_workers
    return DataLoader(
        dataset, batch_size=cfg.batch_size, sampler=sampler, drop_last=train, collate_fn=collate,
        num_workers=workers, worker_init_fn=_init_worker if workers else None,
        persistent_workers=cfg.persistent_workers and workers > 0,
        prefetch_factor=cfg.prefetch_factor if workers else None,
        pin_memory=cfg.pin_memory and device_type == "cuda",
    )


def stop_workers(loader: DataLoader) -> None:
    """Shut down the persistent worker processes of `loader` now. Normally that happens when the loader
    is garbage collected; after an exception its traceback keeps the loader alive until interpreter exit,
    where multiprocessing would wait forever for workers that ignore SIGTERM."""
    iterator = getattr(loader, "_iterator", None)  # torch keeps the persistent workers' iterator here
    if iterator is not None and hasattr(iterator, "_shutdown_workers"):
        iterator._shutdown_workers()
    loader._iterator = None
