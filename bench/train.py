"""`run.py bench train`: full training steps (forward, backward, optimizer) on the present device.

The step is the trainer's own (engine/step.py: placement with channels_last, autocast per
`trainer.amp`, the loss with auxiliary terms, the gradient scaler, clipping, `trainer.compile`). Input is
either synthetic (one random uint8 batch made on the device once: the model's ceiling) or clips decoded
from a dataset folder, or from a plain folder of videos (listed as one class, repeated so that an epoch
keeps every worker busy), by the configured loader (`data.num_workers`).

Reports clips/s over the timed steps (after warm-up), `data_wait` (share of the timed wall time spent
waiting for the loader; null for synthetic input), `peak_bytes` (CUDA: max allocated over warm-up and
timed steps; CPU: the growth of the process's peak RSS over its RSS before the model was built;
`peak_kind` says which), and per attention block the kernel it ran, read off the profiler in one extra
training-mode forward (analysis/profiling/attention_kernels.py).
"""
from __future__ import annotations

import resource
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Tuple

import torch

from analysis.profiling.attention_kernels import observe_kernels
from engine.config import ExperimentConfig
from engine.distributed import init_distributed
from engine.inputs import model_input
from engine.optim import build_optimizer
from engine.precision import autocast, check_amp, grad_scaler
from engine.step import optimizer_update, place_model, training_loss
from errors import UserError
from models.build import build_model
from video.config import fixed_batch_size
from video.dataset import VideoDataset, read_labels
from video.files import list_videos
from video.loader import build_loader

SYNTHETIC_CLASSES = 400
Batch = Tuple[torch.Tensor, torch.Tensor]  # uint8 clips, labels


@dataclass
class BenchTrainSettings:
    """What to measure; None keeps the config's value."""

    frames: int | None = None
    size: int | None = None
    batch: int | None = None
    steps: int = 10
    warmup: int = 2
    data: str = "synthetic"  # or a dataset folder / a folder of videos


def apply_settings(cfg: ExperimentConfig, settings: BenchTrainSettings) -> None:
    """Write --frames/--size/--batch into the data section (frames: dense clip length, TSN segments)."""
    if settings.steps < 1 or settings.warmup < 1:
        raise UserError(f"--steps={settings.steps} and --warmup={settings.warmup} must be at least 1")
    for option, value in (("--frames", settings.frames), ("--size", settings.size), ("--batch", settings.batch)):
        if value is not None and value < 1:
            raise UserError(f"{option}={value} must be at least 1")
    if settings.batch is not None:
        cfg.data.batch_size = settings.batch
    if settings.frames is not None:
        if cfg.model.arch == "tsn":
            cfg.data.sampling.num_segments = settings.frames
        else:
            cfg.data.sampling.num_frames = settings.frames
    if settings.size is not None:
        cfg.data.transforms.crop_size = settings.size
        if min(cfg.data.transforms.train_scale) < settings.size:  # scale jitter must cover the crop
            cfg.data.transforms.train_scale = [settings.size, settings.size]


def clip_frames(cfg: ExperimentConfig) -> int:
    return cfg.data.sampling.num_segments if cfg.model.arch == "tsn" else cfg.data.sampling.num_frames


def video_folder_dataset(videos: Path, out: Path, min_items: int) -> Path:
    """A one-class dataset folder in `out` listing every video of `videos` (absolute paths), repeated
    until there are `min_items` entries, so that one epoch of a few clips still keeps every loader
    worker busy instead of ending after a batch or two."""
    files = [p.resolve() for p in list_videos(videos, "--data")]
    files *= -(-min_items // len(files))
    (out / "labels.txt").write_text("clip\n")
    (out / "train.csv").write_text("path,label\n" + "".join(f"{p},clip\n" for p in files))
    return out


def _synthetic_batches(cfg: ExperimentConfig, device: torch.device, num_classes: int) -> Iterator[Tuple[Batch, float]]:
    size = cfg.data.transforms.crop_size
    shape = (fixed_batch_size(cfg.data), 3, clip_frames(cfg), size, size)
    clips = torch.randint(0, 256, shape, dtype=torch.uint8, device=device)
    labels = torch.randint(0, num_classes, (shape[0],), device=device)
    while True:
        yield (clips, labels), 0.0


def _loader_batches(cfg: ExperimentConfig, root: Path, device: torch.device) -> Iterator[Tuple[Batch, float]]:
    """Training batches epoch after epoch, each with the seconds spent waiting for it."""
    dataset = VideoDataset(root, "train", cfg.data, train=True)
    loader = build_loader(dataset, cfg.data, train=True, seed=cfg.run.seed, device_type=device.type)
    if len(loader) == 0:
        raise UserError(f"--data {root}: {len(dataset)} videos make no batch of {cfg.data.batch_size}")
    epoch = 0
    while True:
        loader.sampler.set_epoch(epoch)
        batches = iter(loader)
        while True:
            started = time.perf_counter()
            batch = next(batches, None)
            waited = time.perf_counter() - started
            if batch is None:
                break
            yield (batch["clip"], batch["label"]), waited
        epoch += 1


def _rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * resource.getpagesize()


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def bench_train(cfg: ExperimentConfig, settings: BenchTrainSettings, config_name: str = "") -> Dict[str, Any]:
    """Build the model and optimizer of `cfg`, run warm-up and timed training steps, return the report."""
    apply_settings(cfg, settings)
    ctx = init_distributed(cfg.trainer.device)
    if ctx.distributed:
        raise UserError("bench train measures one process; run it without torchrun")
    device, trainer = ctx.device, cfg.trainer
    check_amp(trainer.amp, device)
    if trainer.threads > 0:
        torch.set_num_threads(trainer.threads)
    with tempfile.TemporaryDirectory() as scratch:
        root = None if settings.data == "synthetic" else Path(settings.data)
        if root is not None and not root.is_dir():
            raise UserError(f"--data {root}: no such folder")
        if root is not None and not (root / "labels.txt").is_file():
            workers = max(1, cfg.data.num_workers)
            root = video_folder_dataset(root, Path(scratch), 4 * workers * max(1, cfg.data.prefetch_factor)
                                        * cfg.data.batch_size)
        num_classes = cfg.model.num_classes or (len(read_labels(root)) if root else SYNTHETIC_CLASSES)
        rss_before = _rss_bytes()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        torch.manual_seed(cfg.run.seed)
        model = place_model(build_model(cfg.model, num_classes), trainer, device, distributed=False).train()
        optimizer = build_optimizer(model, cfg.optim)
        scaler = grad_scaler(trainer.amp, device)
        forward_model = torch.compile(model) if trainer.compile else model
        batches = (_synthetic_batches(cfg, device, num_classes) if root is None
                   else _loader_batches(cfg, root, device))

        def step(batch: Batch) -> float:
            inputs = model_input(batch[0], device, cfg.data, trainer.channels_last)
            labels = batch[1].to(device, non_blocking=True)
            with autocast(trainer.amp, device):
                logits = forward_model(inputs)
            loss = training_loss(model, logits, labels, cfg.optim.label_smoothing)["loss"]
            scaler.scale(loss).backward()
            optimizer_update(model, optimizer, scaler, cfg.optim.clip_grad)
            return loss.item()  # also waits for the device

        first, _ = next(batches)

        def kernel_forward() -> None:
            with autocast(trainer.amp, device):
                model(model_input(first[0], device, cfg.data, trainer.channels_last))

        attention = observe_kernels(model.attention_blocks(), kernel_forward)
        losses = [step(first)] + [step(next(batches)[0]) for _ in range(settings.warmup - 1)]
        waits: List[float] = []
        seconds: List[float] = []
        for _ in range(settings.steps):
            started = time.perf_counter()
            batch, waited = next(batches)
            losses.append(step(batch))
            _sync(device)
            seconds.append(time.perf_counter() - started)
            waits.append(waited)
        del batches  # stops loader workers
    total = sum(seconds)
    peak = (torch.cuda.max_memory_allocated(device) if device.type == "cuda"
            else max(0, _peak_rss_bytes() - rss_before))
    return {
        "config": config_name, "device": device.type, "device_name": device_name(device),
        "torch": torch.__version__, "amp": trainer.amp, "channels_last": trainer.channels_last,
        "compile": trainer.compile, "batch": cfg.data.batch_size, "frames": clip_frames(cfg),
        "size": cfg.data.transforms.crop_size, "steps": settings.steps, "warmup_steps": settings.warmup,
        "data": settings.data, "workers": 0 if root is None else cfg.data.num_workers,
        "clips_per_s": settings.steps * cfg.data.batch_size / total,
        "step_seconds": statistics.median(seconds),
        "data_wait": None if root is None else sum(waits) / total,
        "peak_bytes": int(peak), "peak_kind": "cuda_max_allocated" if device.type == "cuda" else "rss_growth",
        "losses_finite": all(torch.isfinite(torch.tensor(losses)).tolist()), "last_loss": losses[-1],
        "attention": attention,
    }


def format_report(report: Dict[str, Any]) -> str:
    """A short table: the run's figures, then one line per attention block."""
    wait = "-" if report["data_wait"] is None else f"{100 * report['data_wait']:.1f}%"
    lines = [
        f"bench train {report['config']} on {report['device_name']} ({report['amp']}, batch {report['batch']} "
        f"x {report['frames']}x{report['size']}^2, {report['steps']} steps, data {report['data']})",
        f"  clips/s {report['clips_per_s']:.2f}   step {report['step_seconds'] * 1000:.1f} ms   data wait {wait}   "
        f"peak {report['peak_bytes'] / 2**20:.1f} MiB ({report['peak_kind']})   finite losses "
        f"{'yes' if report['losses_finite'] else 'NO'}",
    ]
    width = max([len(row["block"]) for row in report["attention"]] + [5])
    lines += [f"  {'block':<{width}}  kernel"] + [f"  {row['block']:<{width}}  {row['kernel']}"
                                                  for row in report["attention"]]
    if not report["attention"]:
        lines.append("  (no attention blocks)")
    return "\n".join(lines)
