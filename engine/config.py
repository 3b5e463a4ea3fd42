"""Typed schema of the engine's config sections, and the experiment config the engine reads.

`ExperimentConfig` is what training and evaluation need: `run.*`, `data.*` (video/config.py),
`model.*` (models/config.py), `optim.*`, `trainer.*`, `test.*`, `logger.*`. The command layer
(configs/compose.py) composes it with the other packages' sections and the YAML files.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, List, Mapping

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from errors import UserError
from models.config import ModelConfig
from video.config import DataConfig


@dataclass
class RunConfig:
    name: str = "default"
    output_dir: str = ""  # empty: runs/<name>
    seed: int = 0


@dataclass
class OptimConfig:
    name: str = "sgd"  # sgd | adamw
    lr: float = 0.01
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 1e-4
    betas: List[float] = field(default_factory=lambda: [0.9, 0.999])
    schedule: str = "cosine"  # cosine | multistep | constant
    milestones: List[float] = field(default_factory=list)  # multistep: fractions of the post-warm-up steps
    gamma: float = 0.1
    warmup_steps: int = 0  # optimizer steps of linear warm-up
    warmup_start_factor: float = 0.01  # warm-up starts at lr * this factor
    min_lr_factor: float = 0.0  # cosine ends at lr * this factor
    clip_grad: float = 0.0  # max grad norm; 0 disables
    accumulate: int = 1  # gradient accumulation steps
    label_smoothing: float = 0.0


@dataclass
class TrainerConfig:
    epochs: int = 10
    max_steps: int = 0  # > 0 overrides epochs
    amp: str = "none"  # none | bf16 | fp16 (fp16 on GPU only)
    device: str = "auto"  # auto | cpu | cuda
    log_every: int = 10
    eval_every: int = 1  # epochs
    checkpoint_every: int = 0  # steps; 0: only at epoch ends
    sync_bn: bool = False
    channels_last: bool = False
    compile: bool = False
    threads: int = 0  # torch intra-op threads per process; 0 keeps torch's default
    resume: str = ""  # PATH of a checkpoint, `auto` (the run's last.pt if present) or empty
    init_from: str = ""  # PATH of a checkpoint of ours (e.g. from `convert`) whose weights start the run
    find_unused_parameters: bool = False  # DDP option for models with conditional branches
    progress_bar: bool = True
    memory_budget: str = ""  # data.batch_size=auto: e.g. 16GiB (required on a CPU); empty on CUDA: its free memory


@dataclass
class TestConfig:
    clips: int = 1
    crops: int = 1
    split: str = "val"
    checkpoint: str = ""
    batch_size: int = 0  # videos per batch at test time; 0: data.batch_size


@dataclass
class WandbConfig:
    mode: str = "offline"  # offline | online | disabled
    project: str = "video-nl"


@dataclass
class LoggerConfig:
    wandb: WandbConfig = field(default_factory=WandbConfig)
    tensorboard: bool = False


@dataclass
class ExperimentConfig:
    run: RunConfig = field(default_factory=RunConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    test: TestConfig = field(default_factory=TestConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)


def describe_config_error(exc: OmegaConfBaseException) -> str:
    """One line naming the offending key, from an OmegaConf error."""
    key = getattr(exc, "full_key", None)
    message = str(exc).splitlines()[0]
    return f"config key '{key}': {message}" if key else message


def config_from_dict(data: Mapping[str, Any], schema: type = ExperimentConfig) -> Any:
    """A stored config (checkpoints hold the whole composed config) typed by `schema`: its sections only."""
    own = {f.name for f in fields(schema)}
    try:
        return OmegaConf.merge(OmegaConf.structured(schema), {k: v for k, v in data.items() if k in own})
    except OmegaConfBaseException as exc:
        raise UserError(describe_config_error(exc)) from exc


def save_config(cfg: Any, path: Path) -> None:
    """Write the fully resolved config, so a run can be reproduced from its folder alone."""
    path.parent.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, path, resolve=True)


def run_dir(cfg: ExperimentConfig) -> Path:
    """`run.output_dir`, or `runs/<run.name>` when it is empty."""
    return Path(cfg.run.output_dir or Path("runs") / cfg.run.name)
