"""Attention blocks registered by type name: nonlocal."""
from models.attention import non_local  # noqa: F401  (registers the blocks)
