"""`run.py bench loader`: training-loader clips/s against worker processes and decoder threads.

Reads the training split of `data.root` with the `data.*` settings. Each (workers, decoder threads)
pair gets a fresh loader with persistent workers; one warm-up epoch starts the workers, the next
`--epochs` are timed. Workers and decoder threads compete for the same cores: the grid shows which
split of them pays on this machine.
"""
from __future__ import annotations

import time
from typing import Dict, List, Optional, Sequence

from omegaconf import OmegaConf
from tqdm import tqdm

from errors import UserError
from video.config import DataConfig
from video.dataset import VideoDataset
from video.loader import build_loader


def loader_clips_per_second(dataset: VideoDataset, cfg: DataConfig, workers: int, epochs: int,
                            progress: bool = True, threads: Optional[int] = None) -> float:
    """Steady-state clips/s of a training loader with `workers` processes (after a warm-up epoch),
    decoding with `threads` decoder threads each (default `data.decode_threads`)."""
    settings = OmegaConf.merge(OmegaConf.structured(DataConfig), cfg, {"num_workers": workers,
                                                                       "persistent_workers": True})
    if threads is not None:
        settings.decode_threads = threads
    dataset.cfg = settings  # the dataset decodes with the loader's settings
    loader = build_loader(dataset, settings, train=True, seed=0)
    if len(loader) == 0:
        raise UserError(f"{len(dataset)} videos make no batch of data.batch_size={settings.batch_size}")
    clips, started = 0, 0.0
    with tqdm(total=(epochs + 1) * len(loader), desc=f"loader, {workers} workers", unit="batch",
              disable=not progress, leave=False) as bar:
        for epoch in range(epochs + 1):
            if epoch == 1:
                started = time.perf_counter()
            loader.sampler.set_epoch(epoch)
            for batch in loader:
                clips += len(batch["label"]) if epoch else 0
                bar.update(1)
    return clips / (time.perf_counter() - started)


def bench_loader(dataset: VideoDataset, cfg: DataConfig, workers: Sequence[int], epochs: int,
                 threads: Sequence[Optional[int]] = (None,)) -> List[Dict]:
    """Rows `{"workers", "decode_threads", "clips_per_s"}`, one per worker count and thread count."""
    rows = []
    for count in workers:
        for thread_count in threads:
            rate = loader_clips_per_second(dataset, cfg, count, epochs, threads=thread_count)
            rows.append({"workers": count, "decode_threads": cfg.decode_threads if thread_count is None else thread_count,
                         "clips_per_s": round(rate, 2)})
    return rows
