"""`run.py bench loader`: training-loader clips/s against worker processes and decoder threads, and
(`--format shards`) tar shards against the folder they were written from.

Reads the training split of `data.root` with the `data.*` settings. Each (workers, decoder threads)
pair gets a fresh loader with persistent workers; one warm-up epoch starts the workers, the next
`--epochs` are timed. Workers and decoder threads compete for the same cores: the grid shows which
split of them pays on this machine. The shards comparison alternates the two formats round after
round (a fresh loader each time, its worker start and each epoch's shuffle-buffer fill included, as a
training run meets them) and reports clips/s and the time spent waiting for batches.
"""
from __future__ import annotations

import statistics
import time
from typing import Dict, List, Optional, Sequence

from omegaconf import OmegaConf
from tqdm import tqdm

from errors import UserError
from video.config import DataConfig
from video.dataset import VideoDataset
from video.formats import Dataset, set_epoch
from video.loader import build_loader, stop_workers


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
            set_epoch(loader, epoch)
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


def timed_epochs(dataset: Dataset, cfg: DataConfig, workers: int, epochs: int) -> Dict[str, float]:
    """A fresh training loader over `epochs` epochs: clips/s from its creation to the last batch, the
    mean wait for each epoch's first batch (s) and for the other batches (ms)."""
    settings = OmegaConf.merge(OmegaConf.structured(DataConfig), cfg, {"num_workers": workers,
                                                                       "persistent_workers": True})
    dataset.cfg = settings
    started = time.perf_counter()
    loader = build_loader(dataset, settings, train=True, seed=0)
    clips, first, rest = 0, [], []
    try:
        for epoch in range(epochs):
            set_epoch(loader, epoch)
            batches, waits = iter(loader), []
            while True:
                asked = time.perf_counter()
                batch = next(batches, None)
                if batch is None:
                    break
                waits.append(time.perf_counter() - asked)
                clips += len(batch["label"])
            first.append(waits[0])
            rest += waits[1:]
    finally:
        stop_workers(loader)
    return {"clips_per_s": clips / (time.perf_counter() - started), "first_batch_s": statistics.mean(first),
            "wait_ms": 1000 * statistics.mean(rest) if rest else 0.0}


def shards_against_folders(folders: VideoDataset, shards: Dataset, cfg: DataConfig, workers: Sequence[int],
                           epochs: int, rounds: int) -> List[Dict]:
    """Rows `{"format", "workers", "clips_per_s", "first_batch_s", "wait_ms", "shards_per_folders"}`:
    medians over `rounds` rounds, each timing folders then shards; the last key is the median over
    rounds of the shards/folders clips/s ratio (on the shards rows)."""
    if len(folders) // cfg.batch_size != len(shards) // cfg.batch_size:
        raise UserError(f"the folder has {len(folders)} training videos and the shards {len(shards)}: "
                        "compare shards written from data.root (prep shards --root data.root)")
    runs: Dict[tuple, List[Dict[str, float]]] = {}
    for _ in range(rounds):
        for count in workers:
            for name, dataset in (("folders", folders), ("shards", shards)):
                runs.setdefault((name, count), []).append(timed_epochs(dataset, cfg, count, epochs))
    rows = []
    for (name, count), timed in runs.items():
        row = {"format": name, "workers": count,
               **{key: round(statistics.median(run[key] for run in timed), 4) for key in timed[0]}}
        if name == "shards":
            pairs = zip(timed, runs["folders", count])
            row["shards_per_folders"] = round(statistics.median(s["clips_per_s"] / f["clips_per_s"] for s, f in pairs), 3)
        rows.append(row)
    return rows
