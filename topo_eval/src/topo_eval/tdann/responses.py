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
from topo_models.positions.sheet_map import CLIP_PERCENTILES, UNITS_PER_KERNEL, sheet_map  # noqa: E402


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


def plot_layer(table: pd.DataFrame, layer: str, image_name: str | None = None) -> plt.Figure:
    """One layer's responses on the sheet, left: every unit, right: the local mean
    (:func:`sheet_map`); each panel's colour scale clipped to its own percentiles.

    y grows downwards, as the image rows it follows (x follows columns).
    """
    rows = table[table.layer == layer].sort_values("response")
    coords = rows[["x_mm", "y_mm"]].to_numpy(dtype=np.float64)
    response = rows.response.to_numpy(dtype=np.float64)
    values, extent, sigma = sheet_map(coords, response)
    low, high = CLIP_PERCENTILES
    figure, (axis, smoothed) = plt.subplots(1, 2, figsize=(10.5, 4.8))
    vmin, vmax = np.percentile(response, [low, high])
    dots = axis.scatter(
        coords[:, 0],
        coords[:, 1],
        c=response,
        s=3,
        cmap="viridis",
        vmin=vmin,
        vmax=vmax,
        linewidths=0,
    )
    vmin, vmax = np.nanpercentile(values, [low, high])
    means = smoothed.imshow(values, extent=extent, cmap="viridis", vmin=vmin, vmax=vmax)
    axis.set_aspect("equal")
    axis.invert_yaxis()
    axis.set_xlabel("x (mm)")
    axis.set_ylabel("y (mm)")
    axis.set_title(f"every unit ({len(rows):,}; highest on top)", fontsize=10)
    smoothed.set_xlabel("x (mm)")
    smoothed.set_title(
        f"local mean over σ = {sigma:.2f} mm (~{UNITS_PER_KERNEL:.0f} units)", fontsize=10
    )
    scale = f"{low:g}–{high:g} percentile"
    figure.colorbar(dots, ax=axis, extend="both", label=f"response ({scale})")
    figure.colorbar(means, ax=smoothed, extend="both", label=f"local mean response ({scale})")
    shown = f" to {image_name}" if image_name else " to one image"
    figure.suptitle(f"{layer}: responses{shown} on the cortical sheet")
    figure.tight_layout()
    return figure
