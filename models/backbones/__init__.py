"""Backbones registered by `model.arch`: i3d and c2d (resnet3d), tsn (resnet2d)."""
from models.backbones import resnet2d, resnet3d  # noqa: F401  (registers the architectures)
