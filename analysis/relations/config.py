"""Typed schema of the `visualize.*` config section."""
from dataclasses import dataclass


@dataclass
class VisualizeConfig:
    """Options of the long-range relation visualization (see analysis/relations/visualize.py)."""

    top_k: int = 5  # partners drawn with arrows (in frames other than the query's)
    fps: float = 4.0  # frame rate of the written MP4
    columns: int = 8  # frames per row of the PNG grid
    panel_size: int = 160  # pixels of one frame panel in the MP4
    iaa_maps: bool = True  # also draw the pyramid head's K attention maps when the model has it
