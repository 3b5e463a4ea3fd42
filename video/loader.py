"""DataLoaders over a `VideoDataset`: worker processes, rank sharding, uint8 batches.

Training: each epoch a seeded permutation is cut into global batches, each split into disjoint
micro-batches over ranks and accumulation steps (`TrainSampler`; `loader.sampler.set_epoch(e, start)`
picks the epoch and the global sample position to begin at, so a resumed epoch skips what was consumed
without decoding it); the last incomplete global batch is dropped. Evaluation:
every index exactly once across ranks, no padding duplicates (shards may differ by one video).
Workers decode with the configured decoder threads, run single-threaded torch ops, and seed their
global RNGs per worker; the dataset's own randomness comes from the sampler's keys. Workers ignore the
scheduler's stop signals (SIGTERM, SIGUSR1): the main process finishes its step and stops them.
`worker_rss_mib` reads the workers' resident memory, for restarting them at `data.worker_max_rss`.
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
    """One seeded permutation per epoch, cut into global batches of world_size x accumulate x batch_size
    samples; yields keys `(index, seed, epoch)` for the dataset.

    A global batch is a row of `world_size x accumulate` forward slots of `batch_size` consecutive
    samples; slot `micro x world_size + rank` is this rank's micro-batch `micro`. Every layout of the
    same global batch and batch size (2 ranks x 1 micro-batch, 1 rank x 2) forwards the same samples
    together, so a job that loses or regains ranks keeps its samples and its optimizer's math.
    """

    def __init__(self, size: int, rank: int = 0, world_size: int = 1, seed: int = 0, batch_size: int = 1,
                 accumulate: int = 1):
        _check_rank(rank, world_size)
        if batch_size < 1 or accumulate < 1:
            raise UserError(f"batch size {batch_size} and accumulation {accumulate} must be >= 1")
        self.size, self.rank, self.world_size, self.seed = size, rank, world_size, seed
        self.batch_size, self.accumulate = batch_size, accumulate
        self.epoch, self.start = 0, 0

    @property
    def global_batch(self) -> int:
        """Samples of one optimizer step, all ranks and micro-batches."""
        return self.world_size * self.accumulate * self.batch_size

    def steps(self) -> int:
        """Whole global batches in an epoch (the rest of the permutation is dropped)."""
        return self.size // self.global_batch

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Choose the permutation (and the augmentation seeds) of this epoch, and begin after the first
        `start` samples of the epoch, counted over all ranks (a whole number of global batches)."""
        if start % self.global_batch:
            raise ValueError(f"start {start} is not a whole number of global batches of {self.global_batch}")
        self.epoch, self.start = epoch, start

    def __len__(self) -> int:
        return max(self.steps() - self.start // self.global_batch, 0) * self.accumulate * self.batch_size

    def __iter__(self) -> Iterator[Tuple[int, int, int]]:
        order = np.random.default_rng([self.seed, self.epoch]).permutation(self.size)
        keys = []
        for step in range(self.start // self.global_batch, self.steps()):
            for micro in range(self.accumulate):
                first = step * self.global_batch + (micro * self.world_size + self.rank) * self.batch_size
                keys += [(int(index), self.seed, self.epoch) for index in order[first: first + self.batch_size]]
        return iter(keys)


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
                 seed: int = 0, device_type: str = "cpu", accumulate: int = 1) -> DataLoader:
    """A DataLoader yielding dict batches (see `collate`); pinned memory only for a CUDA device.
    `accumulate`: the micro-batches per optimizer step that training takes from it."""
    if fixed_batch_size(cfg) < 1 or cfg.num_workers < 0:
        raise UserError(f"data.batch_size={cfg.batch_size} must be >= 1 and data.num_workers="
                        f"{cfg.num_workers} >= 0")
    if cfg.worker_max_rss < 0 or (cfg.worker_max_rss > 0 and cfg.num_workers == 0):
        raise UserError(f"data.worker_max_rss={cfg.worker_max_rss:g} limits each loader worker process: it must be "
                        f">= 0, and > 0 needs data.num_workers >= 1 (data.num_workers={cfg.num_workers})")
    if isinstance(dataset, IterableDataset):
        sampler = None  # a stream (video/shard_stream.py) splits by rank and worker itself
    elif train:
        sampler = TrainSampler(len(dataset), rank, world_size, seed, fixed_batch_size(cfg), accumulate)
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


def worker_rss_mib(batches: Iterator) -> List[float]:
    """Resident memory (MiB, from Linux /proc) of each worker process of a DataLoader iterator; empty
    without workers or without /proc."""
    sizes = []
    for worker in getattr(batches, "_workers", []):
        try:
            with open(f"/proc/{worker.pid}/status") as status:
                sizes += [int(line.split()[1]) / 1024 for line in status if line.startswith("VmRSS:")]
        except (OSError, ValueError):
            continue  # the worker ended while we looked
    return sizes


def stop_workers(loader: DataLoader, batches: Iterator | None = None) -> None:
    """Shut down the worker processes of `loader` (its persistent ones) and of the iterator `batches`
    now. Normally that happens when they are garbage collected; after an exception a traceback keeps the
    loader alive until interpreter exit, where multiprocessing would wait forever for workers that
    ignore SIGTERM."""
    iterator = getattr(loader, "_iterator", None)  # torch keeps the persistent workers' iterator here
    for each in (iterator, batches):
        if each is not None and hasattr(each, "_shutdown_workers"):
            each._shutdown_workers()
    loader._iterator = None
