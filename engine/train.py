"""One training loop (behind `run.py train`) for a single process and for `torchrun --nproc_per_node N`.

Loss = cross-entropy (label smoothing) + sum of the model's weighted auxiliary losses, each logged.
An optimizer step spans `optim.accumulate` micro-batches. Checkpoints hold everything needed to
continue bit-for-bit on CPU: the loader's clips depend only on (seed, epoch, index), opening a loader
never touches the training RNG streams, and a resumed epoch's sampler starts after the samples it had
consumed (nothing is decoded to be thrown away). The global batch is kept when the number of ranks
changes (engine/global_batch.py): a job that lost a node accumulates the missing ranks' micro-batches,
and every forward's dropout is seeded by (seed, step, slot), so it takes the same optimizer steps.
SIGTERM or SIGUSR1 (engine/preemption.py) stops every rank after the same step, with last.pt there.
"""
from __future__ import annotations

import contextlib
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from engine.checkpoint import (config_to_container, init_weights_from, load_checkpoint, load_model_state,
                               resolve_resume, rng_state, save_checkpoint, set_rng_state)
from engine.config import ExperimentConfig, run_dir, save_config
from engine.distributed import (DistContext, all_gather_objects, all_reduce_sum, any_rank, barrier,
                                broadcast_buffers, choose_threads, init_distributed, shutdown, tag_warnings)
from engine.evaluate import Evaluation, evaluate
from engine.global_batch import Layout, resumed_layout, saved_position
from engine.inputs import model_input
from engine.metrics import ThroughputMeter, WindowMeans, save_confusion_matrix
from engine.run_log import ProgressBar, build_run_logger
from engine.optim import build_optimizer, build_scheduler
from engine.preemption import StopRequest, resume_hint
from engine.precision import autocast, check_amp, grad_scaler
from engine.step import optimizer_update, place_model, training_loss
from errors import UserError
from models.build import build_model
from video.config import fixed_batch_size
from video.formats import check_resume, describe_source, open_split, set_epoch
from video.loader import TrainSampler, build_loader, stop_workers, worker_rss_mib


# (device, classes) -> (batch, the line that says why); batch 0: not one clip fits, the line says so
BatchChooser = Callable[[torch.device, int], Tuple[int, str]]


@dataclass
class Progress:
    """Where training stands; saved in checkpoints."""

    step: int = 0  # optimizer steps done
    epoch: int = 0  # the sampler epoch in progress
    sample_in_epoch: int = 0  # samples of `epoch` already consumed, all ranks
    global_batch: int = 0  # samples per optimizer step, kept across world sizes
    best_top1: float = -1.0
    skipped_videos: int = 0  # undecodable videos replaced so far, all ranks
    worker_restarts: int = 0  # times this rank's loader workers passed data.worker_max_rss and were restarted
    truncated_videos: int = 0  # reads of truncated videos used with the frames they have, all ranks


def prepare_on_main(prepare_data: Optional[Callable[[], None]], ctx: DistContext) -> None:
    """Run `prepare_data` (e.g. writing a dataset) on rank 0 while the other ranks wait for it."""
    if prepare_data is not None:
        if ctx.is_main:
            prepare_data()
        barrier(ctx)


def resolve_batch_size(cfg: ExperimentConfig, ctx: DistContext, num_classes: int,
                       choose: Optional[BatchChooser]) -> None:
    """Replace `data.batch_size=auto` by the chooser's batch: the smallest over the ranks (each may see
    its own free device memory), so every rank steps the same batch; rank 0 prints the binding line."""
    if not isinstance(cfg.data.batch_size, str):
        return
    if cfg.data.batch_size != "auto" or choose is None:
        fixed_batch_size(cfg.data)  # raises the error that names the value
    batch, line = min(all_gather_objects(choose(ctx.device, num_classes), ctx))
    if batch < 1:
        raise UserError(line)
    if ctx.is_main:
        print(line, flush=True)
    cfg.data.batch_size = batch


def slot_seed(seed: int, step: int, slot: int) -> int:
    """The torch seed of one forward: slot `slot` of optimizer step `step`, whichever rank computes it."""
    return int(np.random.SeedSequence([seed, step, slot]).generate_state(1)[0])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class Trainer:
    """Builds data, model and optimizer from the config, then runs `fit()`."""

    def __init__(self, cfg: ExperimentConfig, ctx: DistContext, stop: StopRequest | None = None,
                 prepare_data: Optional[Callable[[], None]] = None, choose_batch: Optional[BatchChooser] = None) -> None:
        self.cfg, self.ctx = cfg, ctx
        self.stop = stop or StopRequest()  # an inactive one never fires
        trainer = cfg.trainer
        check_amp(trainer.amp, ctx.device)
        if trainer.sync_bn and ctx.distributed and ctx.device.type != "cuda":
            raise UserError("trainer.sync_bn=true needs CUDA (torch's SyncBatchNorm is GPU-only)")
        threads, threads_line = choose_threads(trainer.threads, ctx)
        torch.set_num_threads(threads)
        if ctx.is_main:
            print(threads_line, flush=True)
        if cfg.optim.accumulate < 1:
            raise UserError(f"optim.accumulate={cfg.optim.accumulate}: must be >= 1")
        self.run_dir = run_dir(cfg)
        self.checkpoint_dir = self.run_dir / "checkpoints"
        resume_from = resolve_resume(trainer.resume, self.checkpoint_dir)
        resume_state = load_checkpoint(resume_from) if resume_from is not None else None

        prepare_on_main(prepare_data, ctx)
        split_args = dict(rank=ctx.rank, world_size=ctx.world_size, seed=cfg.run.seed)
        self.train_set = open_split(cfg.data, "train", train=True, **split_args)
        self.val_set = open_split(cfg.data, "val", train=False, **split_args)
        self.labels = list(self.train_set.labels)
        resolve_batch_size(cfg, ctx, cfg.model.num_classes or len(self.labels), choose_batch)
        self.config_dict = config_to_container(cfg)  # with the batch chosen: checkpoints and config.yaml agree
        self.layout = Layout(ctx.world_size, cfg.data.batch_size, cfg.optim.accumulate)
        if resume_state is not None:
            self.layout, notes = resumed_layout(self.layout, resume_state, resume_from)
            for note in notes if ctx.is_main else []:
                print(note, flush=True)
        loader_args = dict(**split_args, device_type=ctx.device.type)
        self.train_loader = build_loader(self.train_set, cfg.data, train=True, accumulate=self.layout.accumulate,
                                         **loader_args)
        self.val_loader = build_loader(self.val_set, cfg.data, train=False, **loader_args)
        sampler = self.train_loader.sampler
        self.steps_per_epoch = sampler.steps() if isinstance(sampler, TrainSampler) else \
            len(self.train_loader) // self.layout.accumulate
        if self.steps_per_epoch == 0:
            raise UserError(f"{describe_source(cfg.data, 'train')}: {len(self.train_set)} training videos make no "
                            f"full step of {self.layout.describe()} samples")
        self.total_steps = trainer.max_steps if trainer.max_steps > 0 else trainer.epochs * self.steps_per_epoch

        torch.manual_seed(cfg.run.seed)  # the same initial weights on every rank and in every world size
        self.model = self._build_model()
        seed_everything(cfg.run.seed + ctx.rank)
        self.optimizer = build_optimizer(self.model, cfg.optim)
        self.scheduler = build_scheduler(self.optimizer, cfg.optim, self.total_steps)
        self.scaler = grad_scaler(trainer.amp, ctx.device)
        self.progress = Progress(global_batch=self.layout.global_batch)
        self.resume_rng: Dict[str, Any] | None = None
        if resume_state is not None:
            self._restore(resume_state, resume_from)
        self.forward_model = self._wrap(self.model)
        self.window = WindowMeans()
        self.meter = ThroughputMeter()
        self.pending_failed: List[str] = []
        self.pending_truncated: List[str] = []

    def _build_model(self) -> nn.Module:
        num_classes = self.cfg.model.num_classes or len(self.labels)
        if num_classes != len(self.labels):
            raise UserError(f"model.num_classes={num_classes} but {self.cfg.data.root}/labels.txt "
                            f"lists {len(self.labels)} classes")
        model = build_model(self.cfg.model, num_classes)
        if self.cfg.trainer.init_from:
            message = init_weights_from(model, self.cfg.trainer.init_from)
            if self.ctx.is_main:
                print(message, flush=True)
        return place_model(model, self.cfg.trainer, self.ctx.device, self.ctx.distributed)

    def _wrap(self, model: nn.Module) -> nn.Module:
        """DDP across ranks (one process: the model itself), then torch.compile when asked."""
        if self.ctx.distributed:
            device_ids = [self.ctx.device.index] if self.ctx.device.type == "cuda" else None
            model = DistributedDataParallel(model, device_ids=device_ids,
                                            find_unused_parameters=self.cfg.trainer.find_unused_parameters)
        return torch.compile(model) if self.cfg.trainer.compile else model

    # ---- checkpoints -------------------------------------------------------------------------
    def _restore(self, state: Dict[str, Any], path: Path) -> None:
        load_model_state(self.model, state, path)
        try:
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
        except (ValueError, KeyError) as exc:
            raise UserError(f"checkpoint {path}: optimizer state does not fit optim.name={self.cfg.optim.name} "
                            f"({str(exc).splitlines()[0]})") from exc
        if self.scaler.is_enabled() and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        saved = {k: v for k, v in state["progress"].items() if k in Progress.__dataclass_fields__}
        _, consumed = saved_position(state)
        self.progress = Progress(**{**saved, "sample_in_epoch": consumed, "global_batch": self.layout.global_batch})
        check_resume(self.cfg.data, state["config"]["data"], len(state["rng"]), self.ctx.world_size,
                     self.progress.sample_in_epoch, path)
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
        accumulate = self.layout.accumulate
        for micro in range(accumulate):
            torch.manual_seed(slot_seed(self.cfg.run.seed, self.progress.step, micro * self.ctx.world_size + self.ctx.rank))
            started = time.perf_counter()
            batch = next(batches)
            self.meter.waited(time.perf_counter() - started, len(batch["label"]))
            self.pending_failed.extend(batch["failed"])
            self.pending_truncated.extend(batch["truncated"])
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
        """Every rank's undecodable and truncated videos since the last call (collective); counted into
        progress and reported; the undecodable ones are returned."""
        gathered = all_gather_objects((self.pending_failed, self.pending_truncated), self.ctx)
        failed = [entry for rank_failed, _ in gathered for entry in rank_failed]
        truncated = [entry for _, rank_truncated in gathered for entry in rank_truncated]
        self.pending_failed, self.pending_truncated = [], []
        self.progress.skipped_videos += len(failed)
        self.progress.truncated_videos += len(truncated)
        for entry in failed:
            self.bar.write(f"skipped video (replaced by another sample): {entry}")
        for entry in truncated:
            self.bar.write(f"truncated video (used with the frames it has): {entry}")
        return failed

    def _log_window(self) -> None:
        stats = self.window.reduce(lambda t: all_reduce_sum(t, self.ctx))
        stats.update(self.meter.summary(self.ctx.world_size))
        self.meter.reset()
        stats["lr"] = self.step_lr
        self._collect_failed()
        record = {"epoch": self.progress.epoch, **stats, "skipped_videos": self.progress.skipped_videos,
                  "truncated_videos": self.progress.truncated_videos}
        self.logger.log(record, self.progress.step)
        self.bar.update(0, stats)

    # ---- evaluation --------------------------------------------------------------------------
    def _evaluate(self) -> Evaluation:
        """Single-view validation on the plain model (DDP forwards would be collective, and ranks may
        hold different numbers of videos) with rank 0's BN statistics, the ones checkpoints keep; the
        training RNG streams are left exactly as they were."""
        saved = rng_state()
        broadcast_buffers(self.model, self.ctx)
        evaluation = evaluate(self.model, self.val_loader, self.ctx, self.cfg)
        self.model.train()
        set_rng_state(saved)
        return evaluation

    def _end_of_period(self, evaluate: bool) -> Dict[str, Any]:
        """Validate (when due), report, and write last.pt / best.pt."""
        record: Dict[str, Any] = {"epoch": self.progress.epoch}
        failed = self._collect_failed()
        record.update(skipped_videos=self.progress.skipped_videos, skipped_this_period=len(failed),
                      truncated_videos=self.progress.truncated_videos)
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
        DataLoader iterator draws its worker seeds from them); after a resume the sampler starts after
        what was consumed."""
        if self.resume_rng is not None:
            set_rng_state(self.resume_rng)
            self.resume_rng = None
        # the folder sampler counts samples over all ranks; a shard stream counts this rank's
        start = self.progress.sample_in_epoch
        set_epoch(self.train_loader, self.progress.epoch,
                  start if isinstance(self.train_loader.sampler, TrainSampler) else start // self.ctx.world_size)
        saved = rng_state()
        batches = iter(self.train_loader)
        set_rng_state(saved)
        return batches

    def _workers_over_limit(self, batches) -> bool:
        """Whether a loader worker holds more than data.worker_max_rss MiB (said in one line and counted);
        the workers are then restarted at the sample position reached, which loses and repeats nothing
        because a clip depends only on its key."""
        limit = self.cfg.data.worker_max_rss
        largest = max(worker_rss_mib(batches), default=0.0) if limit > 0 else 0.0
        if largest <= limit:
            return False
        self.progress.worker_restarts += 1
        line = (f"rank {self.ctx.rank}: loader workers restarted after step {self.progress.step}: one held "
                f"{largest:.0f} MiB > data.worker_max_rss={limit:g}")
        self.bar.write(line) if self.ctx.is_main else print(line, flush=True)
        return True

    def _stop_agreed(self) -> bool:
        """Whether any rank has received a stop signal (a collective: every rank gets the same answer)."""
        return any_rank(self.stop.received is not None, self.ctx)

    def _stop_here(self) -> str:
        """Write last.pt at the step just finished and return the line that says how to resume."""
        names = [name for name in all_gather_objects(self.stop.received, self.ctx) if name]
        self._collect_failed()
        self._save(best=False)
        return resume_hint(names[0], self.progress.step, str(self.checkpoint_dir / "last.pt"))

    def fit(self) -> Dict[str, Any]:
        """Train to `trainer.max_steps` (or `trainer.epochs`), validating and checkpointing on the way."""
        cfg, progress = self.cfg, self.progress
        if self.ctx.is_main:
            save_config(cfg, self.run_dir / "config.yaml")
        self.logger = build_run_logger(cfg, self.config_dict, self.run_dir, self.ctx.is_main,
                                       resume_step=progress.step if progress.step > 0 else None)
        self.bar = ProgressBar(self.total_steps, progress.step, self.ctx.is_main, cfg.trainer.progress_bar)
        started = time.perf_counter()
        last: Dict[str, Any] = {}
        stopped: str | None = None
        self.forward_model.train()
        if cfg.trainer.resume == "auto" and progress.step == 0:
            self._save(best=False)  # a restart before the first checkpoint keeps this run's global batch
        try:
            while progress.step < self.total_steps and stopped is None:
                batches = self._start_epoch()
                self.meter.reset()
                epoch_samples = self.steps_per_epoch * self.layout.global_batch
                while progress.sample_in_epoch < epoch_samples:
                    self._optimizer_step(batches)
                    progress.step += 1
                    progress.sample_in_epoch += self.layout.global_batch
                    self.bar.update(1)
                    if progress.step % cfg.trainer.log_every == 0:
                        self._log_window()
                    if progress.step >= self.total_steps:
                        break
                    if self._stop_agreed():
                        stopped = self._stop_here()
                        break
                    if cfg.trainer.checkpoint_every and progress.step % cfg.trainer.checkpoint_every == 0:
                        self._collect_failed()
                        self._save(best=False)
                    if self._workers_over_limit(batches):
                        stop_workers(self.train_loader, batches)
                        batches = self._start_epoch()
                del batches
                if stopped is not None:
                    break
                finished = progress.step >= self.total_steps
                if progress.sample_in_epoch >= epoch_samples:
                    progress.epoch += 1
                    progress.sample_in_epoch = 0
                due = finished or (progress.sample_in_epoch == 0 and progress.epoch % cfg.trainer.eval_every == 0)
                last = self._end_of_period(evaluate=due)
        finally:
            self.bar.close()
            self.logger.close()
            for loader in (self.train_loader, self.val_loader):
                stop_workers(loader)
        if stopped is not None and self.ctx.is_main:
            print(stopped, flush=True)
        return {"run_dir": str(self.run_dir), "steps": progress.step, "best_top1": progress.best_top1,
                "stopped": stopped,
                "last": last, "train_seconds": time.perf_counter() - started,
                "best_checkpoint": str(self.checkpoint_dir / "best.pt"),
                "last_checkpoint": str(self.checkpoint_dir / "last.pt")}


def train(cfg: ExperimentConfig, prepare_data: Optional[Callable[[], None]] = None,
          choose_batch: Optional[BatchChooser] = None) -> Dict[str, Any]:
    """Join the torchrun job (if any), train, and leave the process group; SIGTERM / SIGUSR1 stop the
    run cleanly after the step in flight (`stopped` in the result holds the line that says so).
    `prepare_data` runs on rank 0 before the datasets are opened (the command layer writes the
    synthetic dataset there); `choose_batch` resolves `data.batch_size=auto` (the command layer's
    memory model)."""
    ctx = init_distributed(cfg.trainer.device)
    if ctx.distributed:
        tag_warnings(ctx.rank)
    try:
        with StopRequest() as stop:
            return Trainer(cfg, ctx, stop, prepare_data, choose_batch).fit()
    finally:
        shutdown(ctx)
