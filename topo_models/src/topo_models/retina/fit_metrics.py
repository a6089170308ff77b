"""How well a fitted retina model predicts recorded spike counts (shared by training and eval).

A fit scores windows of the stimulus movie: each window is a fresh movie for the model
(``reset()``), whose first ``history`` frames only fill the filters and are not scored.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def window_rates(model: nn.Module, video: torch.Tensor, history: int) -> torch.Tensor:
    """(windows, cells, scored frames) predicted counts, each window a movie of its own.

    ``video``: (windows, channels, history + scored, H, W); the model's output maps (H', W')
    are flattened into cells, so a mosaic model predicts one cell per output pixel.
    """
    bare = getattr(model, "module", model)
    bare.reset()
    out = model(video)
    bare.reset()  # nothing of these windows is carried into the next call
    flat = out.permute(0, 1, 3, 4, 2).reshape(out.shape[0], -1, out.shape[2])
    return flat[:, :, history:]


def poisson_nll(rates: torch.Tensor, counts: torch.Tensor, eps: float) -> torch.Tensor:
    """Mean of ``r̂ − y·log(r̂ + ε)`` over every element (the Poisson NLL without log y!)."""
    return (rates - counts * torch.log(rates + eps)).mean()


def cell_correlations(predicted: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
    """(cells,) Pearson correlation over time of two (cells, time) series (0 for a constant)."""
    p = predicted.double() - predicted.double().mean(dim=1, keepdim=True)
    o = observed.double() - observed.double().mean(dim=1, keepdim=True)
    denominator = (p.pow(2).sum(dim=1) * o.pow(2).sum(dim=1)).sqrt()
    return torch.where(denominator > 0, (p * o).sum(dim=1) / denominator, 0.0)


def kernel_correlations(fitted: torch.Tensor, planted: np.ndarray) -> torch.Tensor:
    """(cells,) correlation of each fitted kernel (cells, 1, kt, kh, kw) with its planted one."""
    truth = torch.as_tensor(planted, dtype=torch.float64).reshape(len(planted), -1)
    return cell_correlations(fitted.detach().double().reshape(len(planted), -1), truth)
