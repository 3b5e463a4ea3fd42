"""Run logging: a console progress bar, metrics.jsonl, wandb (offline by default), optional TensorBoard.

Only rank 0 writes: other ranks get a `RunLogger` with no sinks and no progress bar.
The progress bar shows the throughput meter's clips/s and data-wait share (engine/metrics.py).
"""
from __future__ import annotations

import json
import os
import sys
import uuid
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Protocol

from tqdm import tqdm

from engine.config import ExperimentConfig
from errors import UserError


class Sink(Protocol):
    def log(self, record: Dict[str, Any], step: int) -> None: ...
    def log_image(self, key: str, path: Path, step: int) -> None: ...
    def close(self) -> None: ...


class JsonlSink:
    """One JSON object per line. A new run starts the file afresh; a run resumed after step S first drops
    the records of steps after S (logged by the interrupted run after its last checkpoint), so no step
    appears twice."""

    def __init__(self, path: Path, resume_step: Optional[int] = None) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is not None and path.is_file():
            kept = [line for line in path.read_text(encoding="utf-8").splitlines(keepends=True)
                    if _record_step(line) <= resume_step]
            partial = path.with_name(f".{path.name}.tmp")
            partial.write_text("".join(kept), encoding="utf-8")
            os.replace(partial, path)
        self.handle = open(path, "a" if resume_step is not None else "w", encoding="utf-8")

    def log(self, record: Dict[str, Any], step: int) -> None:
        self.handle.write(json.dumps({"step": step, **record}) + "\n")
        self.handle.flush()

    def log_image(self, key: str, path: Path, step: int) -> None:
        self.log({key: str(path)}, step)

    def close(self) -> None:
        self.handle.close()


def _record_step(line: str) -> float:
    """The step of one metrics.jsonl line; a torn last line (a killed writer) counts as after every step."""
    try:
        return json.loads(line)["step"]
    except (ValueError, KeyError, TypeError):
        return float("inf")


class WandbSink:
    """A wandb run in `run_dir/wandb` (mode offline|online), holding the config, metrics and images.

    The run's id is kept in `run_dir/wandb_run_id`; a resumed training run continues that wandb run."""

    ID_FILE = "wandb_run_id"

    def __init__(self, cfg: ExperimentConfig, config_dict: Dict[str, Any], run_dir: Path,
                 resume_step: Optional[int] = None) -> None:
        import wandb

        self.wandb = wandb
        id_file = run_dir / self.ID_FILE
        resuming = resume_step is not None and id_file.is_file()
        run_id = id_file.read_text().strip() if resuming else uuid.uuid4().hex[:8]
        run_dir.mkdir(parents=True, exist_ok=True)
        id_file.write_text(run_id + "\n")
        self.run = wandb.init(project=cfg.logger.wandb.project, name=cfg.run.name, dir=str(run_dir),
                              mode=cfg.logger.wandb.mode, config=config_dict, id=run_id,
                              resume="allow" if resuming else None,
                              settings=wandb.Settings(silent=True, console="off"))

    def log(self, record: Dict[str, Any], step: int) -> None:
        self.run.log(record, step=step)

    def log_image(self, key: str, path: Path, step: int) -> None:
        self.run.log({key: self.wandb.Image(str(path))}, step=step)

    def close(self) -> None:
        self.run.finish()


def log_images(cfg: ExperimentConfig, out_dir: str | Path, prefix: str, files: Dict[str, str]) -> None:
    """The PNG files among `files` to wandb (when `logger.wandb.mode` is not disabled), in a wandb run kept
    beside them in `out_dir`, each as `prefix/<file stem>`."""
    if cfg.logger.wandb.mode == "disabled":
        return
    sink = WandbSink(cfg, {prefix: {"files": files}}, Path(out_dir))
    for name in files.values():
        if str(name).endswith(".png"):
            sink.log_image(f"{prefix}/{Path(name).stem}", Path(name), 0)
    sink.close()


class TensorBoardSink:
    """Scalars and images for TensorBoard in `run_dir/tensorboard` (needs the tensorboard package)."""

    def __init__(self, run_dir: Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:
            raise UserError("logger.tensorboard=true needs the tensorboard package (pip install tensorboard)") from exc
        self.writer = SummaryWriter(str(run_dir / "tensorboard"))

    def log(self, record: Dict[str, Any], step: int) -> None:
        for key, value in record.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(key, value, step)

    def log_image(self, key: str, path: Path, step: int) -> None:
        import numpy as np
        from PIL import Image

        self.writer.add_image(key, np.asarray(Image.open(path).convert("RGB")), step, dataformats="HWC")

    def close(self) -> None:
        self.writer.close()


def _jsonl(cfg: ExperimentConfig, config_dict: Dict[str, Any], run_dir: Path, resume_step: Optional[int]) -> Sink:
    return JsonlSink(run_dir / "metrics.jsonl", resume_step)


def _wandb(cfg: ExperimentConfig, config_dict: Dict[str, Any], run_dir: Path, resume_step: Optional[int]) -> Sink | None:
    return WandbSink(cfg, config_dict, run_dir, resume_step) if cfg.logger.wandb.mode != "disabled" else None


def _tensorboard(cfg: ExperimentConfig, config_dict: Dict[str, Any], run_dir: Path, resume_step: Optional[int]) -> Sink | None:
    return TensorBoardSink(run_dir) if cfg.logger.tensorboard else None


# each factory returns its sink, or None when the config leaves it off
SINKS: Dict[str, Callable[[ExperimentConfig, Dict[str, Any], Path, Optional[int]], Sink | None]] = {
    "jsonl": _jsonl,
    "wandb": _wandb,
    "tensorboard": _tensorboard,
}


class RunLogger:
    """Fans records out to every sink; a logger with no sinks (ranks > 0) does nothing."""

    def __init__(self, sinks: List[Sink]) -> None:
        self.sinks = sinks

    def log(self, record: Dict[str, Any], step: int) -> None:
        for sink in self.sinks:
            sink.log(record, step)

    def log_image(self, key: str, path: Path, step: int) -> None:
        for sink in self.sinks:
            sink.log_image(key, path, step)

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()


def build_run_logger(cfg: ExperimentConfig, config_dict: Dict[str, Any], run_dir: Path, is_main: bool,
                     resume_step: Optional[int] = None) -> RunLogger:
    """The sinks the config enables, on rank 0 only (`resume_step`: continue a run resumed after that step)."""
    if cfg.logger.wandb.mode not in ("offline", "online", "disabled"):
        raise UserError(f"logger.wandb.mode={cfg.logger.wandb.mode!r}: expected offline, online or disabled")
    if not is_main:
        return RunLogger([])
    sinks = [make(cfg, config_dict, run_dir, resume_step) for make in SINKS.values()]
    return RunLogger([sink for sink in sinks if sink is not None])


class ProgressBar:
    """Progress over optimizer steps with loss, LR, clips/s and data-wait share (rank 0 only): a tqdm bar
    on a terminal; redirected to a file (`> train.log`), one plain line per log window, flushed at once."""

    def __init__(self, total: int, initial: int, is_main: bool, show_bar: bool = True) -> None:
        self.is_main, self.total, self.done = is_main, total, initial
        self.live = is_main and show_bar and sys.stderr.isatty()
        self.lines = is_main and show_bar and not self.live
        self.bar = tqdm(total=total, initial=initial, disable=not self.live, dynamic_ncols=True, mininterval=1.0,
                        unit="step")

    def update(self, steps: int, stats: Dict[str, float] | None = None) -> None:
        self.bar.update(steps)
        self.done += steps
        if stats is None:
            return
        fields = {"loss": f"{stats['loss']:.3f}", "lr": f"{stats['lr']:.2e}", "clips/s": f"{stats['clips_per_s']:.1f}",
                  "data": f"{100 * stats['data_wait']:.0f}%"}
        self.bar.set_postfix(fields, refresh=False)
        if self.lines:
            print(f"step {self.done}/{self.total}  " + "  ".join(f"{k} {v}" for k, v in fields.items()), flush=True)

    def write(self, line: str) -> None:
        """Print a line above the bar (rank 0 only), flushed."""
        if self.is_main:
            tqdm.write(line)
            sys.stdout.flush()

    def close(self) -> None:
        self.bar.close()
