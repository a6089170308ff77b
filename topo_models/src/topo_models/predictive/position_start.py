"""Where a readout's positions start: at receptive fields estimated from the data.

The published build starts the position MLP at random, and from some seeds the fit never
unfolds the map it starts from (docs/predictive.md). ``start_positions_at_fields`` moves every
session's readout to receptive-field centres estimated in pixels of the model's input (e.g.
``topo_data.sensorium.receptive_fields.estimate_rf_centres``), before training.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from topo_models.errors import TopoError
from topo_models.predictive.encoder import FiringRateEncoder

# "random": the published start (the position MLP's own init); "data": the estimated fields.
POSITION_STARTS = ("random", "data")


def start_positions_at_fields(
    model: FiringRateEncoder,
    rf_centres_px: Mapping[str, object] | None,
    input_size: Sequence[int] | None,
    input_channels: int,
) -> None:
    """Move every session's readout positions to receptive-field centres estimated in pixels.

    ``rf_centres_px``: data key → (n, 2) (x = column, y = row) pixels of the model's input of
    ``input_size`` (H, W), e.g. ``topo_data.sensorium.receptive_fields.estimate_rf_centres``.
    Pixels become grid units of the core's output: a core without input padding crops a border,
    measured here by running it once on a zero image of that size.
    """
    if rf_centres_px is None or input_size is None:
        raise TopoError(
            "position_start=data needs receptive-field estimates from the data",
            field="position_start",
            expected="rf_centres_px and input_size (data=sensorium gives both), or 'random'",
        )
    height, width = (int(v) for v in input_size)
    was_training = model.core.training
    model.core.eval()
    try:
        with torch.no_grad():
            output, _ = model.core(torch.zeros(1, input_channels, height, width))
    finally:
        model.core.train(was_training)
    out_height, out_width = output.shape[-2:]
    crop = torch.tensor([(width - out_width) / 2, (height - out_height) / 2])
    extent = torch.tensor([max(out_width - 1, 1), max(out_height - 1, 1)], dtype=torch.float32)
    for key, readout in model.readout.items():
        if key not in rf_centres_px:
            raise TopoError(
                "no receptive-field estimates for a session",
                field="rf_centres_px",
                expected=list(model.readout),
                found=sorted(rf_centres_px),
            )
        pixels = torch.as_tensor(np.asarray(rf_centres_px[key], dtype=np.float32))
        readout.start_positions_at(2 * (pixels - crop) / extent - 1)
