"""Attention blocks registered by type name (nonlocal, se, cbam, bam, pam, cam, fla); one interface:
`Block(in_channels, **options)` mapping (B, C, T, H, W) to the same shape."""
from models.attention import bam, cbam, danet, fla, non_local, se  # noqa: F401  (registers the blocks)
