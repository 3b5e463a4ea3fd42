"""The root config of every command: the sections of all packages, YAML composition, `key=value` overrides.

Each package owns the schema of its own section (video/config.py, models/config.py, engine/config.py,
inference/config.py, analysis/*/config.py, data_prep/config.py); this module composes them into one root `Config`. A YAML
file may list other YAML files under `defaults:` (paths relative to `configs/` or to the file itself);
they are merged in order, then the file, then overrides.
Any unknown key, wrong type or missing file raises `UserError` naming it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, List

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from analysis.profiling.config import ProfileConfig
from analysis.relations.config import VisualizeConfig
from data_prep.config import PrepConfig
from engine.config import ExperimentConfig, describe_config_error
from errors import UserError
from inference.config import PredictConfig
from video.config import check_batch_size

CONFIG_DIR = Path(__file__).resolve().parent  # the one place that knows where configs live


@dataclass
class Config(ExperimentConfig):
    """Every command's config: the engine's experiment sections plus analysis and prep options."""

    predict: PredictConfig = field(default_factory=PredictConfig)
    profile: ProfileConfig = field(default_factory=ProfileConfig)
    visualize: VisualizeConfig = field(default_factory=VisualizeConfig)
    prep: PrepConfig = field(default_factory=PrepConfig)
    checkpoint: str = ""  # shorthand used by `test` and `visualize`: checkpoint=PATH


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
        detail = describe_config_error(exc) if isinstance(exc, OmegaConfBaseException) else str(exc)
        raise UserError(f"override '{item}': {detail}") from exc


def load_config(config_file: str | None = None, overrides: Iterable[str] = (), base: Any = None) -> Config:
    """Compose schema defaults, `base` (settings found elsewhere, e.g. inferred from a checkpoint), the YAML
    file (with its defaults) and `key=value` overrides, in that order."""
    cfg = OmegaConf.structured(Config)
    layers = ([OmegaConf.create(base)] if base else []) + (_load_yaml(Path(config_file)) if config_file else [])
    overrides = list(overrides)
    for item in overrides:
        if "=" not in item:
            raise UserError(f"override '{item}' is not of the form key=value")
    try:
        for layer in layers:
            cfg = OmegaConf.merge(cfg, layer)
    except (OmegaConfBaseException, TypeError, ValueError) as exc:
        raise UserError(describe_config_error(exc) if isinstance(exc, OmegaConfBaseException) else str(exc)) from exc
    for item in overrides:
        _apply_override(cfg, item)
    check_batch_size(cfg.data)
    return cfg  # a DictConfig typed by Config: attribute access, validated assignment


def checkpoint_path(cfg: Config, command: str) -> str:
    """`checkpoint=PATH` (or `test.checkpoint`), which the commands that read a trained model require."""
    path = cfg.checkpoint or cfg.test.checkpoint
    if not path:
        raise UserError(f"{command} needs a checkpoint: run.py {command} checkpoint=PATH")
    return path


def config_for_checkpoint(trained: Config, cfg: Config, config_file: str | None, overrides: Iterable[str]) -> Config:
    """What a command runs a trained model with: the checkpoint's config with the command line's overrides
    on top; with a --config file, that file's settings instead, keeping the checkpoint's model (the weights
    fix the architecture)."""
    try:
        if config_file:
            return OmegaConf.merge(cfg, {"model": trained.model})
        return OmegaConf.merge(trained, OmegaConf.from_dotlist(list(overrides)))
    except OmegaConfBaseException as exc:
        raise UserError(f"config override: {str(exc).splitlines()[0]}") from exc


def model_config_file(name: str) -> Path:
    """configs/model/<name>.yaml, or a UserError listing the shipped model configs."""
    path = CONFIG_DIR / "model" / f"{name}.yaml"
    if not path.is_file():
        raise UserError(f"unknown model config '{name}'; known: {', '.join(model_config_names())}")
    return path


def model_config_names() -> List[str]:
    return sorted(p.stem for p in (CONFIG_DIR / "model").glob("*.yaml"))
