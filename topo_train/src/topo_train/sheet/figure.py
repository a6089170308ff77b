"""The figure a training run logs: one image's responses laid out on the cortical sheet."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from topo_data import IMAGENET_MEAN, IMAGENET_STD  # noqa: E402
from topo_models.atomic import atomic_write_bytes  # noqa: E402
from topo_models.positions.sheet_map import CLIP_PERCENTILES, UNITS_PER_KERNEL, sheet_map  # noqa: E402
from topo_train.figure_margins import set_margins_in_inches  # noqa: E402

PANEL_INCHES = (4.6, 4.6)  # one panel with its share of the margins
OUTER_INCHES = (0.2, 0.75, 0.55, 1.0)  # left, right, bottom, top
BETWEEN_INCHES = (1.45, 0.0)  # between panels: a colour bar and its label


@torch.no_grad()
def save_sheet_figure(
    model: nn.Module, positions, image: torch.Tensor, layers: list[str], path: Path
) -> Path:
    """Each layer's responses to one image on its sheet, as a smoothed map (:func:`sheet_map`).

    Thousands of units share each hypercolumn, so a plain scatter hides the map; a local mean
    over about ``UNITS_PER_KERNEL`` units shows it. Each panel has its own colour scale, clipped
    to percentiles; the titles say what is drawn. y grows downwards, as the image rows it
    follows.

    Args:
        model: a trunk returning ``(output, features)``.
        positions: layer name → LayerPositions (coordinates in channel-major flatten order).
        image: (3, H, W) one normalised image.
        layers: which layers to show, one panel each.
        path: PNG to write (atomically).
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    _, features = model(image[None].to(device))
    model.train(was_training)
    panels = len(layers) + 1
    figure, axes = plt.subplots(1, panels, figsize=(PANEL_INCHES[0] * panels, PANEL_INCHES[1]))
    set_margins_in_inches(figure, PANEL_INCHES, OUTER_INCHES, BETWEEN_INCHES)
    shown = image.cpu() * torch.tensor(IMAGENET_STD)[:, None, None]
    shown = shown + torch.tensor(IMAGENET_MEAN)[:, None, None]
    axes[0].imshow(shown.permute(1, 2, 0).clamp(0, 1).numpy())
    axes[0].set_title(f"input image ({image.shape[-2]}×{image.shape[-1]} px)", fontsize=10)
    axes[0].axis("off")
    low, high = CLIP_PERCENTILES
    for axis, layer in zip(axes[1:], layers, strict=True):
        response = features[layer][0].flatten().float().cpu().numpy()
        values, extent, sigma = sheet_map(np.asarray(positions[layer].coordinates), response)
        vmin, vmax = np.nanpercentile(values, [low, high])
        drawn = axis.imshow(values, extent=extent, cmap="viridis", vmin=vmin, vmax=vmax)
        axis.set_title(
            f"{layer}: {len(response):,} units\nlocal mean over σ = {sigma:.2f} mm "
            f"(~{UNITS_PER_KERNEL:.0f} units)",
            fontsize=10,
        )
        axis.set_xlabel("x (mm)")
        axis.set_ylabel("y (mm)")
        figure.colorbar(
            drawn,
            ax=axis,
            fraction=0.046,
            pad=0.04,
            extend="both",
            label=f"response ({low:g}–{high:g} percentile of this layer)",
        )
    figure.suptitle("responses to one image on the cortical sheet")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    plt.close(figure)
    atomic_write_bytes(buffer.getvalue(), path)
    return path
