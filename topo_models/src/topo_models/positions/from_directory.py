"""``positions=from_dir``: a position directory (topo's or TDANN's released files) as a layout."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from torch import nn

from topo_models.errors import TopoError
from topo_models.positions.layouts import layer_dims
from topo_models.positions.network_positions import NetworkPositions
from topo_models.positions.sheets import get_scale


class PositionsFromDirectory:
    """Load positions from ``directory`` and check them against the model's real layers.

    Args:
        directory: a directory of ``<layer>.npz`` (or spacetorch ``.pkl``) files.
        scale: the scale the files are in. Files labelled otherwise are refused; unlabelled
            files get this label. None keeps whatever label the files carry (possibly none).
    """

    def __init__(self, directory: str, scale: str | None = None) -> None:
        self.directory = Path(directory)
        self.scale = None if scale is None else get_scale(scale).name

    def build(self, model: nn.Module, input_size: int | Sequence[int]) -> NetworkPositions:
        positions = NetworkPositions.load(self.directory)
        if self.scale is not None:
            if positions.scale not in (None, self.scale):
                raise TopoError(
                    "the position files are labelled with another scale",
                    file=self.directory,
                    field="scale",
                    expected=self.scale,
                    found=positions.scale,
                )
            if positions.scale is None:
                positions = NetworkPositions(
                    {name: replace(layer, scale=self.scale) for name, layer in positions.items()},
                    scale=self.scale,
                )
        positions.check_dims(layer_dims(model, input_size), str(self.directory))
        return positions
