"""Responses registered on the cortical sheet: every unit's response next to its (x, y) in mm.

The flat order of ``torch.flatten(features[layer], 1)`` is the order of the layer's
``coordinates`` (channel-major), so unit i of the table sits at ``coordinates[i]``.
"""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from topo_models import TopoError  # noqa: E402


@torch.no_grad()
def registered_responses(
    model: nn.Module, positions: Mapping, image: torch.Tensor, layers: list[str] | None = None
) -> pd.DataFrame:
    """Table of (layer, unit, x_mm, y_mm, response) for one normalised image (3, H, W)."""
    model.eval()
    device = next(model.parameters()).device
    _, features = model(image[None].to(device))
    names = list(positions) if layers is None else layers
    tables = []
    for name in names:
        if name not in features or name not in positions:
            raise TopoError(
                "layer has no features or no positions",
                field=name,
                expected=sorted(set(features) & set(positions)),
                found=name,
            )
        response = features[name][0].flatten().float().cpu().numpy()
        coords = np.asarray(positions[name].coordinates)
        if len(coords) != len(response):
            raise TopoError(
                "positions do not match the layer",
                field=name,
                expected=f"{len(response)} units",
                found=f"{len(coords)} coordinates",
            )
        tables.append(
            pd.DataFrame(
                {
                    "layer": name,
                    "unit": np.arange(len(response)),
                    "x_mm": coords[:, 0],
                    "y_mm": coords[:, 1],
                    "response": response,
                }
            )
        )
    return pd.concat(tables, ignore_index=True)


def plot_layer(table: pd.DataFrame, layer: str) -> plt.Figure:
    """One layer's responses on the sheet, left: every unit, right: mean per hexagonal bin.

    y grows downwards, as the image rows it follows (x follows columns).
    """
    rows = table[table.layer == layer].sort_values("response")
    figure, (axis, binned) = plt.subplots(1, 2, figsize=(10, 4.4))
    dots = axis.scatter(rows.x_mm, rows.y_mm, c=rows.response, s=3, cmap="viridis", linewidths=0)
    means = binned.hexbin(
        rows.x_mm,
        rows.y_mm,
        C=rows.response,
        reduce_C_function=np.mean,
        gridsize=24,
        cmap="viridis",
        linewidths=0,
    )
    binned.set_aspect("equal")
    binned.invert_yaxis()
    binned.set_xlabel("x (mm)")
    binned.set_title("mean per bin")
    figure.colorbar(means, ax=binned, label="mean response")
    axis.set_aspect("equal")
    axis.invert_yaxis()
    axis.set_xlabel("x (mm)")
    axis.set_ylabel("y (mm)")
    axis.set_title(f"{layer}: every unit on the cortical sheet")
    figure.colorbar(dots, ax=axis, label="response")
    figure.tight_layout()
    return figure
