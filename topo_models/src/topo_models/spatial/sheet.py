"""A spatial network's learned positions as topo sheet positions (``topo_models.positions``).

Every family keeps its units' places in the same abstraction, so a spatial network's run writes
``positions/<layer>.npz`` like a TDANN run and any analysis reading position files reads these.
Unit order is the flattened layer output (channel-major): a conv channel's position is shared by
all its locations. The learned coordinates are in the network's own units (the costs have no
mm scale), so the scale label stays unset; each layer gets one neighbourhood of all its units.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from topo_models.errors import TopoError
from topo_models.positions import LayerPositions, NetworkPositions


@torch.no_grad()
def learned_sheet_positions(model: nn.Module) -> NetworkPositions:
    """``NetworkPositions`` of every spatial layer of ``model`` (2-d positions only)."""
    model = getattr(model, "module", model)
    layers = model.spatial_layers()
    parameter = next(model.parameters())
    was_training = model.training
    model.eval()
    _, features = model(torch.zeros(1, *model.input_shape, device=parameter.device))
    model.train(was_training)
    sheet = {}
    for name, layer in layers.items():
        coordinates = layer.positions.detach().cpu().double().numpy()
        if coordinates.shape[1] != 2:
            raise TopoError(
                "sheet positions are two-dimensional",
                field=f"{name}.positions",
                expected="(neurons, 2)",
                found=tuple(coordinates.shape),
            )
        dims = tuple(features[name].shape[1:])
        per_unit = np.repeat(coordinates, math.prod(dims[1:]), axis=0)
        extent = float(np.ptp(per_unit, axis=0).max()) if len(per_unit) > 1 else 0.0
        sheet[name] = LayerPositions(
            name=name,
            dims=dims,
            coordinates=per_unit,
            neighborhood_indices=np.arange(len(per_unit))[None, :],
            neighborhood_width=extent if extent > 0 else 1.0,
        )
    return NetworkPositions(sheet)
