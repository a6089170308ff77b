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


@torch.no_grad()
def save_sheet_figure(
    model: nn.Module, positions, image: torch.Tensor, layers: list[str], path: Path
) -> Path:
    """Each layer's responses on its sheet: mean response of the units in each hexagonal bin.

    Thousands of units share each hypercolumn, so a plain scatter hides the map; binning shows
    it. y grows downwards, as the image rows it follows.

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
    figure, axes = plt.subplots(1, len(layers) + 1, figsize=(4.2 * (len(layers) + 1), 4))
    shown = image.cpu() * torch.tensor(IMAGENET_STD)[:, None, None]
    shown = shown + torch.tensor(IMAGENET_MEAN)[:, None, None]
    axes[0].imshow(shown.permute(1, 2, 0).clamp(0, 1).numpy())
    axes[0].set_title("input")
    axes[0].axis("off")
    for axis, layer in zip(axes[1:], layers, strict=True):
        response = features[layer][0].flatten().float().cpu().numpy()
        coords = np.asarray(positions[layer].coordinates)
        bins = axis.hexbin(
            coords[:, 0],
            coords[:, 1],
            C=response,
            reduce_C_function=np.mean,
            gridsize=24,
            cmap="viridis",
            linewidths=0,
        )
        axis.set_aspect("equal")
        axis.invert_yaxis()
        axis.set_title(f"{layer}: response on the sheet")
        axis.set_xlabel("x (mm)")
        axis.set_ylabel("y (mm)")
        figure.colorbar(bins, ax=axis, fraction=0.046, pad=0.04, label="mean response")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    plt.close(figure)
    atomic_write_bytes(buffer.getvalue(), path)
    return path
