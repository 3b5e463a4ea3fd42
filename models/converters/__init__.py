"""Checkpoint converters registered by source name (`run.py convert --source NAME`)."""
from models.converters import mmaction2, pytorchvideo, torchvision  # noqa: F401  (registers the converters)
