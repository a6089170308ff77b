"""Sheets where a regulariser places channels, not units: TopoLoss, the neighbour-cosine loss on
convolutions and the wiring cost each give a layer's C channels one position apiece.

To measure such a layer with the topography analyses, which need a place for every unit
(channel, row, column) of its feature map, the channel sheet is tiled: the map's H × W output
positions become H × W cells of one sheet (retinotopy, as in TDANN's layout and All-TNN's
hypercolumns), and inside every cell the C channels sit where the regulariser put them. Cells
span the bounding box of the positions the layer already has, so every distance-based
parameter of the analyses means the same on both.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from topo_models.errors import TopoError
from topo_models.positions.layer_positions import LayerPositions


def channel_grid(channels: int) -> np.ndarray:
    """(C, 2) centres of channel c on the most-square h × w grid (h ≤ w, row-major, as TopoLoss
    and the neighbour-cosine loss lay out a layer's output units), in [0, 1]²: x the column."""
    from topo_models.losses.topoloss import sheet_shape

    h, w = sheet_shape(int(channels))
    index = np.arange(int(channels))
    return np.stack([(index % w + 0.5) / w, (index // w + 0.5) / h], axis=1)


def tile_channels(layer: LayerPositions, channel_xy: np.ndarray) -> LayerPositions:
    """``layer``'s units re-placed: unit (c, i, j) at cell (i, j) of an H × W tiling of the
    layer's bounding box, at ``channel_xy[c]`` inside it (positions rescaled to [0, 1]² over
    their own extent). Same dims, scale and neighbourhoods (unit indices are unchanged)."""
    if len(layer.dims) != 3:
        raise TopoError(
            "channel positions tile a convolutional map",
            field=layer.name,
            expected="dims (C, H, W)",
            found=layer.dims,
        )
    channels, height, width = layer.dims
    xy = np.asarray(channel_xy, dtype=np.float64)
    if xy.shape != (channels, 2) or not np.isfinite(xy).all():
        raise TopoError(
            "channel positions do not match the layer",
            field=layer.name,
            expected=f"({channels}, 2) finite positions, one per channel of {layer.dims}",
            found=f"shape {xy.shape}",
        )
    low, extent = xy.min(axis=0), np.ptp(xy, axis=0)
    inside = np.where(extent > 0, (xy - low) / np.where(extent > 0, extent, 1.0), 0.5)
    inside = 0.1 + 0.8 * inside  # a margin, so that neighbouring cells do not touch
    coords = np.asarray(layer.coordinates, dtype=np.float64)
    origin, size = coords.min(axis=0), np.ptp(coords, axis=0)
    cell = size / np.array([width, height])
    rows, columns = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    corner = np.stack([columns.ravel(), rows.ravel()], axis=1)  # (H·W, 2) in (x, y) cells
    tiled = (corner[None, :, :] + inside[:, None, :]) * cell + origin  # (C, H·W, 2)
    return replace(layer, coordinates=tiled.reshape(-1, 2).astype(np.float32))
