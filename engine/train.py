"""`run.py train`: one training loop for a single process and for `torchrun --nproc_per_node N`.

Loss = cross-entropy (label smoothing) + sum of the model's weighted auxiliary losses, each logged.
An optimizer step spans `optim.accumulate` micro-batches. Checkpoints hold everything needed to
continue bit-for-bit on CPU: the loader's clips depend only on (seed, epoch, index), opening a loader
never touches the training RNG streams, and a resumed epoch is fast-forwarded over the micro-batches
it had consumed.
"""
from __future__ import annotations

import argparse
import contextlib
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from engine.checkpoint import (config_to_container, load_checkpoint, load_model_state, resolve_resume,
                               rng_state, save_checkpoint, set_rng_state)
from data_prep.synthetic import write_dataset
from engine.config import Config, run_dir, save_config
from engine.distributed import (DistContext, all_gather_objects, all_reduce_sum, barrier, broadcast_buffers,
                                init_distributed, shutdown)
from engine.evaluate import Evaluation, predict
from engine.inputs import model_input
from engine.logging import ProgressBar, ThroughputMeter, build_run_logger
from engine.metrics import WindowMeans, save_confusion_matrix
from engine.optim import build_optimizer, build_scheduler
from engine.precision import autocast, check_amp, grad_scaler
from engine.step import optimizer_update, place_model, training_loss
from errors import UserError
from models.build import build_model
from video.dataset import VideoDataset
from video.loader import build_loader


@dataclass
class Progress:
    """Where training stands; saved in checkpoints."""

    step: int = 0  # optimizer steps done
    epoch: int = 0  # the sampler epoch in progress
    batch_in_epoch: int = 0  # micro-batches of `epoch` already consumed
    best_top1: float = -1.0
    skipped_videos: int = 0  # undecodable videos replaced so far, all ranks


def ensure_synthetic_dataset(cfg: Config, ctx: DistContext) -> None:
    """With `trainer.synthetic_if_missing`, rank 0 writes the built-in dataset to an empty `data.root`."""
    root = Path(cfg.data.root)
    if cfg.trainer.synthetic_if_missing and not (root / "labels.txt").is_file():
        if ctx.is_main:
            print(f"writing the built-in synthetic dataset to {root}")
            write_dataset(root, cfg.prep.synthetic, progress=False)
        barrier(ctx)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class Trainer:
    """Builds data, model and optimizer from the config, then runs `fit()`."""

    def __init__(self, cfg: Config, ctx: DistContext) -> None:
        self.cfg, self.ctx = cfg, ctx
        trainer = cfg.trainer
        check_amp(trainer.amp, ctx.device)
        if trainer.sync_bn and ctx.distributed and ctx.device.type != "cuda":
            raise UserError("trainer.sync_bn=true needs CUDA (torch's SyncBatchNorm is GPU-only)")
        if trainer.threads > 0:
            torch.set_num_threads(trainer.threads)
        if cfg.optim.accumulate < 1:
            raise UserError(f"optim.accumulate={cfg.optim.accumulate}: must be >= 1")
        self.run_dir = run_dir(cfg)
        self.checkpoint_dir = self.run_dir / "checkpoints"
        self.config_dict = config_to_container(cfg)

        ensure_synthetic_dataset(cfg, ctx)
        self.train_set = VideoDataset(cfg.data.root, "train", cfg.data, train=True)
        self.val_set = VideoDataset(cfg.data.root, "val", cfg.data, train=False)
        self.labels = list(self.train_set.labels)
        loader_args = dict(rank=ctx.rank, world_size=ctx.world_size, seed=cfg.run.seed, device_type=ctx.device.type)
        self.train_loader = build_loader(self.train_set, cfg.data, train=True, **loader_args)
        self.val_loader = build_loader(self.val_set, cfg.data, train=False, **loader_args)
        self.steps_per_epoch = len(self.train_loader) // cfg.optim.accumulate
        if self.steps_per_epoch == 0:
            raise UserError(f"{cfg.data.root}: {len(self.train_set)} training videos make no full step of "
                            f"data.batch_size={cfg.data.batch_size} x {ctx.world_size} ranks x "
                            f"optim.accumulate={cfg.optim.accumulate}")
        self.total_steps = trainer.max_steps if trainer.max_steps > 0 else trainer.epochs * self.steps_per_epoch

        torch.manual_seed(cfg.run.seed)  # the same initial weights on every rank and in every world size
        self.model = self._build_model()
        seed_everything(cfg.run.seed + ctx.rank)
        self.optimizer = build_optimizer(self.model, cfg.optim)
        self.scheduler = build_scheduler(self.optimizer, cfg.optim, self.total_steps)
        self.scaler = grad_scaler(trainer.amp, ctx.device)
        self.progress = Progress()
        self.resume_rng: Dict[str, Any] | None = None
        resume_from = resolve_resume(trainer.resume, self.checkpoint_dir)
        if resume_from is not None:
            self._restore(resume_from)
        self.forward_model = self._wrap(self.model)
        self.window = WindowMeans()
        self.meter = ThroughputMeter()
        self.pending_failed: List[str] = []

    def _build_model(self) -> nn.Module:
        num_classes = self.cfg.model.num_classes or len(self.labels)
        if num_classes != len(self.labels):
            raise UserError(f"model.num_classes={num_classes} but {self.cfg.data.root}/labels.txt "
                            f"lists {len(self.labels)} classes")
        return place_model(build_model(self.cfg.model, num_classes), self.cfg.trainer, self.ctx.device,
                           self.ctx.distributed)

    def _wrap(self, model: nn.Module) -> nn.Module:
        """DDP across ranks (one process: the model itself), then torch.compile when asked."""
        if self.ctx.distributed:
            device_ids = [self.ctx.device.index] if self.ctx.device.type == "cuda" else None
            model = DistributedDataParallel(model, device_ids=device_ids,
                                            find_unused_parameters=self.cfg.trainer.find_unused_parameters)
        return torch.compile(model) if self.cfg.trainer.compile else model

    # ---- checkpoints -------------------------------------------------------------------------
    def _restore(self, path: Path) -> None:
        state = load_checkpoint(path)
        load_model_state(self.model, state, path)
        try:
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
        except (ValueError, KeyError) as exc:
            raise UserError(f"checkpoint {path}: optimizer state does not fit optim.name={self.cfg.optim.name} "
                            f"({str(exc).splitlines()[0]})") from exc
        if self.scaler.is_enabled() and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.progress = Progress(**state["progress"])
        if len(state["rng"]) == self.ctx.world_size:
            self.resume_rng = state["rng"][self.ctx.rank]
        elif self.ctx.is_main:
            print(f"note: {path} was written by {len(state['rng'])} ranks, this run has {self.ctx.world_size}: "
                  "weights and optimizer continue, random streams start afresh")
        if self.ctx.is_main:
            print(f"resuming from {path} at step {self.progress.step} (epoch {self.progress.epoch})")

    def _save(self, best: bool) -> None:
        """last.pt (and best.pt) with every rank's RNG state; collective, rank 0 writes."""
        rngs = all_gather_objects(rng_state(), self.ctx)
        if not self.ctx.is_main:
            return
        state = {
            "format": 1, "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
            "step": self.progress.step, "progress": asdict(self.progress), "rng": rngs,
            "config": self.config_dict, "labels": self.labels,
        }
        save_checkpoint(state, self.checkpoint_dir / "last.pt")
        if best:
            save_checkpoint(state, self.checkpoint_dir / "best.pt")

    # ---- one optimizer step ------------------------------------------------------------------
    def _loss(self, logits: torch.Tensor, labels: torch.Tensor) -> Dict[str, torch.Tensor]:
        return training_loss(self.model, logits, labels, self.cfg.optim.label_smoothing)

    def _optimizer_step(self, batches) -> None:
        accumulate = self.cfg.optim.accumulate
        for micro in range(accumulate):
            started = time.perf_counter()
            batch = next(batches)
            self.meter.waited(time.perf_counter() - started, len(batch["label"]))
            self.pending_failed.extend(batch["failed"])
            inputs = model_input(batch["clip"], self.ctx.device, self.cfg.data, self.cfg.trainer.channels_last)
            labels = batch["label"].to(self.ctx.device, non_blocking=True)
            last_micro = micro == accumulate - 1
            sync = contextlib.nullcontext() if last_micro or not self.ctx.distributed else self.forward_model.no_sync()
            with sync:
                with autocast(self.cfg.trainer.amp, self.ctx.device):
                    logits = self.forward_model(inputs)
                terms = self._loss(logits, labels)
                self.scaler.scale(terms["loss"] / accumulate).backward()
            self.window.add(terms)
        self.step_lr = self.optimizer.param_groups[0]["lr"]  # the rate this step used, for the log
        optimizer_update(self.model, self.optimizer, self.scaler, self.cfg.optim.clip_grad)
        self.scheduler.step()

    # ---- logging -----------------------------------------------------------------------------
    def _collect_failed(self) -> List[str]:
        """Every rank's undecodable videos since the last call (collective); counted into progress."""
        failed = [entry for rank_list in all_gather_objects(self.pending_failed, self.ctx) for entry in rank_list]
        self.pending_failed = []
        self.progress.skipped_videos += len(failed)
        for entry in failed:
            self.bar.write(f"skipped video (replaced by another sample): {entry}")
        return failed

    def _log_window(self) -> None:
        stats = self.window.reduce(lambda t: all_reduce_sum(t, self.ctx))
        stats.update(self.meter.summary(self.ctx.world_size))
        self.meter.reset()
        stats["lr"] = self.step_lr
        self._collect_failed()
        record = {"epoch": self.progress.epoch, **stats, "skipped_videos": self.progress.skipped_videos}
        self.logger.log(record, self.progress.step)
        self.bar.update(0, stats)

    # ---- evaluation --------------------------------------------------------------------------
    def _evaluate(self) -> Evaluation:
        """Single-view validation on the plain model (DDP forwards would be collective, and ranks may
        hold different numbers of videos) with rank 0's BN statistics, the ones checkpoints keep; the
        training RNG streams are left exactly as they were."""
        saved = rng_state()
        broadcast_buffers(self.model, self.ctx)
        evaluation = predict(self.model, self.val_loader, self.ctx, self.cfg)
        self.model.train()
        set_rng_state(saved)
        return evaluation

    def _end_of_period(self, evaluate: bool) -> Dict[str, Any]:
        """Validate (when due), report, and write last.pt / best.pt."""
        record: Dict[str, Any] = {"epoch": self.progress.epoch}
        failed = self._collect_failed()
        record.update(skipped_videos=self.progress.skipped_videos, skipped_this_period=len(failed))
        best = False
        if evaluate:
            evaluation = self._evaluate()
            metrics = evaluation.metrics
            record.update(val_top1=metrics["top1"], val_top5=metrics["top5"],
                          val_mean_class_acc=metrics["mean_class_acc"], val_videos=len(evaluation.scores),
                          val_skipped_videos=len(evaluation.skipped))
            best = metrics["top1"] > self.progress.best_top1
            if best:
                self.progress.best_top1 = metrics["top1"]
            if self.ctx.is_main and metrics["confusion"]:
                paths = save_confusion_matrix(metrics["confusion"], self.labels, self.run_dir)
                self.logger.log_image("val_confusion_matrix", paths["png"], self.progress.step)
        self.logger.log(record, self.progress.step)
        self._save(best)
        summary = "  ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in record.items())
        self.bar.write(f"step {self.progress.step}/{self.total_steps}  {summary}")
        return record

    # ---- the loop ----------------------------------------------------------------------------
    def _start_epoch(self):
        """Open the loader on the sampler's epoch, leaving the training RNG streams untouched (a fresh
        DataLoader iterator draws its worker seeds from them); after a resume, skip what was consumed."""
        if self.resume_rng is not None:
            set_rng_state(self.resume_rng)
            self.resume_rng = None
        self.train_loader.sampler.set_epoch(self.progress.epoch)
        saved = rng_state()
        batches = iter(self.train_loader)
        for _ in range(self.progress.batch_in_epoch):
            next(batches)
        set_rng_state(saved)
        return batches

    def fit(self) -> Dict[str, Any]:
        """Train to `trainer.max_steps` (or `trainer.epochs`), validating and checkpointing on the way."""
        cfg, progress = self.cfg, self.progress
        if self.ctx.is_main:
            save_config(cfg, self.run_dir / "config.yaml")
        self.logger = build_run_logger(cfg, self.config_dict, self.run_dir, self.ctx.is_main,
                                       append=progress.step > 0)
        self.bar = ProgressBar(self.total_steps, progress.step, self.ctx.is_main, cfg.trainer.progress_bar)
        started = time.perf_counter()
        last: Dict[str, Any] = {}
        self.forward_model.train()
        try:
            while progress.step < self.total_steps:
                batches = self._start_epoch()
                self.meter.reset()
                while progress.batch_in_epoch < self.steps_per_epoch * cfg.optim.accumulate:
                    self._optimizer_step(batches)
                    progress.step += 1
                    progress.batch_in_epoch += cfg.optim.accumulate
                    self.bar.update(1)
                    if progress.step % cfg.trainer.log_every == 0:
                        self._log_window()
                    if progress.step >= self.total_steps:
                        break
                    if cfg.trainer.checkpoint_every and progress.step % cfg.trainer.checkpoint_every == 0:
                        self._collect_failed()
                        self._save(best=False)
                del batches
                finished = progress.step >= self.total_steps
                if progress.batch_in_epoch >= self.steps_per_epoch * cfg.optim.accumulate:
                    progress.epoch += 1
                    progress.batch_in_epoch = 0
                due = finished or (progress.batch_in_epoch == 0 and progress.epoch % cfg.trainer.eval_every == 0)
                last = self._end_of_period(evaluate=due)
        finally:
            self.bar.close()
            self.logger.close()
        return {"run_dir": str(self.run_dir), "steps": progress.step, "best_top1": progress.best_top1,
                "last": last, "train_seconds": time.perf_counter() - started,
                "best_checkpoint": str(self.checkpoint_dir / "best.pt"),
                "last_checkpoint": str(self.checkpoint_dir / "last.pt")}


def train(cfg: Config) -> Dict[str, Any]:
    """Join the torchrun job (if any), train, and leave the process group."""
    ctx = init_distributed(cfg.trainer.device)
    try:
        return Trainer(cfg, ctx).fit()
    finally:
        shutdown(ctx)


def run_command(args: argparse.Namespace, cfg: Config) -> int:
    train(cfg)
    return 0
