"""Cortical-sheet positions: where each unit sits (mm), its neighbourhoods, and generators.

File format and algorithms follow TDANN / spacetorch (see docs/tdann.md); every position
set carries a scale label (``"training"`` or ``"human"``) because the two must never be mixed.
"""

from topo_models.positions.channel_layouts import channel_grid, tile_channels
from topo_models.positions.from_directory import PositionsFromDirectory
from topo_models.positions.layer_positions import LayerPositions
from topo_models.positions.layouts import (
    RetinotopicLayout,
    UniformLayout,
    jitter_coordinates,
    layer_dims,
    retinotopic_coordinates,
    uniform_coordinates,
)
from topo_models.positions.neighborhoods import precompute_neighborhoods
from topo_models.positions.network_positions import NetworkPositions
from topo_models.positions.scale_conversion import convert_scale
from topo_models.positions.sheets import SCALES, SheetScale, get_scale
from topo_models.positions.swap import swap_optimize

__all__ = [
    "SCALES",
    "LayerPositions",
    "NetworkPositions",
    "PositionsFromDirectory",
    "RetinotopicLayout",
    "SheetScale",
    "UniformLayout",
    "channel_grid",
    "convert_scale",
    "get_scale",
    "jitter_coordinates",
    "layer_dims",
    "precompute_neighborhoods",
    "retinotopic_coordinates",
    "swap_optimize",
    "tile_channels",
    "uniform_coordinates",
]
