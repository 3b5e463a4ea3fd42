"""Build a `VideoClassifier` from the `model.*` config: backbone, pretrained weights, attention, head."""
from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

import models.attention  # noqa: F401  (registers the attention blocks)
import models.backbones  # noqa: F401  (registers the architectures)
from errors import UserError
from models.backbones.pretrained import load_2d_weights
from models.config import ModelConfig
from models.heads import ClassifierHead
from models.iaa import PyramidAttentionHead
from models.placement import place_attention
from models.recognizer import VideoClassifier
from models.registry import BACKBONES


def _plain(value: Any) -> Any:
    """OmegaConf containers -> Python lists/dicts (what block constructors expect)."""
    if isinstance(value, (DictConfig, ListConfig)):
        return OmegaConf.to_container(value, resolve=True)
    return value


def build_model(cfg: ModelConfig, num_classes: int) -> VideoClassifier:
    """The network named by `cfg.arch`, with `cfg.attention` placed and the IAA or linear head."""
    if num_classes < 1:
        raise UserError(f"num_classes={num_classes} must be at least 1")
    backbone = BACKBONES.get(cfg.arch)(cfg)
    if cfg.pretrained:
        load_2d_weights(backbone, cfg.pretrained)
    place_attention(backbone, _plain(cfg.attention))
    channels = backbone.stage_channels
    if cfg.iaa.enabled:
        head = PyramidAttentionHead(channels, list(cfg.iaa.stages), cfg.iaa.dim, cfg.iaa.num_maps, num_classes,
                                    cfg.dropout, cfg.iaa.detach_pca)
        aux_weights = {"pca": float(cfg.iaa.loss_weight)}
    else:
        head = ClassifierHead(channels["res5"], num_classes, cfg.dropout, per_segment=cfg.arch == "tsn")
        aux_weights = {}
    return VideoClassifier(backbone, head, aux_weights)
