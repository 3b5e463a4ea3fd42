"""The typed experiment config: schema, YAML composition, `key=value` overrides, validation.

Each package owns the schema of its own section (video/config.py, models/config.py, ...); this module
composes them into one root `Config`. A YAML file may list other YAML files under `defaults:` (paths
relative to `configs/` or to the file itself); they are merged in order, then the file, then overrides.
Any unknown key, wrong type or missing file raises `UserError` naming it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, List

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from analysis.config import ProfileConfig, VisualizeConfig
from data_prep.config import PrepConfig
from errors import UserError
from models.config import ModelConfig
from video.config import DataConfig

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


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
    find_unused_parameters: bool = False  # DDP option for models with conditional branches
    progress_bar: bool = True
    synthetic_if_missing: bool = False  # write the built-in dataset (prep.synthetic.*) to data.root if absent


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
class Config:
    run: RunConfig = field(default_factory=RunConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    test: TestConfig = field(default_factory=TestConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    profile: ProfileConfig = field(default_factory=ProfileConfig)
    visualize: VisualizeConfig = field(default_factory=VisualizeConfig)
    prep: PrepConfig = field(default_factory=PrepConfig)
    checkpoint: str = ""  # shorthand used by `test` and `visualize`: checkpoint=PATH


def _describe(exc: OmegaConfBaseException) -> str:
    """One line naming the offending key, from an OmegaConf error."""
    key = getattr(exc, "full_key", None)
    message = str(exc).splitlines()[0]
    return f"config key '{key}': {message}" if key else message


def _resolve_include(name: str, including_file: Path | None) -> Path:
    candidates = []
    if including_file is not None:
        candidates.append(including_file.parent / name)
    candidates.append(CONFIG_DIR / name)
    for candidate in candidates:
        for path in (candidate, candidate.with_suffix(".yaml")):
            if path.is_file():
                return path
    raise UserError(f"config file not found: {name}")


def _load_yaml(path: Path, seen: tuple[Path, ...] = ()) -> List[DictConfig]:
    """The layers of one YAML file: its `defaults:` (recursively), then its own content."""
    path = path.resolve()
    if path in seen:
        raise UserError(f"config file includes itself: {path}")
    if not path.is_file():
        raise UserError(f"config file not found: {path}")
    try:
        node = OmegaConf.load(path)
    except Exception as exc:  # YAML syntax errors come in several types
        raise UserError(f"config file {path} is not valid YAML: {str(exc).splitlines()[0]}") from exc
    if not isinstance(node, DictConfig):
        raise UserError(f"config file {path} must hold a mapping at the top level")
    layers: List[DictConfig] = []
    includes = node.pop("defaults", [])
    for name in includes:
        layers += _load_yaml(_resolve_include(str(name), path), seen + (path,))
    layers.append(node)
    return layers


def _apply_override(cfg: DictConfig, item: str) -> None:
    """Set one `key=value` (value parsed as YAML); list items are addressed as `model.attention.0.mode`."""
    key, _, text = item.partition("=")
    try:
        value = yaml.safe_load(text) if text else None
    except yaml.YAMLError as exc:
        raise UserError(f"override '{item}': value is not valid YAML") from exc
    parent_key = key.rpartition(".")[0]
    if parent_key and OmegaConf.select(cfg, parent_key) is None:
        raise UserError(f"config key '{key}' does not exist")
    try:
        OmegaConf.update(cfg, key, value, merge=True)
    except (OmegaConfBaseException, TypeError, ValueError, IndexError) as exc:
        detail = _describe(exc) if isinstance(exc, OmegaConfBaseException) else str(exc)
        raise UserError(f"override '{item}': {detail}") from exc


def load_config(config_file: str | None = None, overrides: Iterable[str] = ()) -> Config:
    """Compose schema defaults, the YAML file (with its defaults) and `key=value` overrides."""
    cfg = OmegaConf.structured(Config)
    layers = _load_yaml(Path(config_file)) if config_file else []
    overrides = list(overrides)
    for item in overrides:
        if "=" not in item:
            raise UserError(f"override '{item}' is not of the form key=value")
    try:
        for layer in layers:
            cfg = OmegaConf.merge(cfg, layer)
    except (OmegaConfBaseException, TypeError, ValueError) as exc:
        raise UserError(_describe(exc) if isinstance(exc, OmegaConfBaseException) else str(exc)) from exc
    for item in overrides:
        _apply_override(cfg, item)
    return cfg  # a DictConfig typed by Config: attribute access, validated assignment


def save_config(cfg: Config, path: Path) -> None:
    """Write the fully resolved config, so a run can be reproduced from its folder alone."""
    path.parent.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, path, resolve=True)


def to_yaml(cfg: Config) -> str:
    return OmegaConf.to_yaml(cfg, resolve=True)


def run_dir(cfg: Config) -> Path:
    """`run.output_dir`, or `runs/<run.name>` when it is empty."""
    return Path(cfg.run.output_dir or Path("runs") / cfg.run.name)


def config_from_dict(data: Any) -> Config:
    """Rebuild a typed config from a plain dict (as stored in checkpoints)."""
    try:
        return OmegaConf.merge(OmegaConf.structured(Config), data)
    except OmegaConfBaseException as exc:
        raise UserError(_describe(exc)) from exc
