"""Readout positions predicted from cortical coordinates (neuralpredictors' grid mean predictor).

``normalize_source_grid`` puts the neurons' coordinates in a fixed frame and
``grid_mean_predictor_mlp`` maps them to ``F.grid_sample`` positions μ; ``FullGaussian2d`` uses
both when built with a ``grid_mean_predictor``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from topo_models.errors import TopoError

__all__ = ["grid_mean_predictor_mlp", "normalize_source_grid"]

GRID_PREDICTOR_KEYS = ("hidden_layers", "hidden_features", "final_tanh")


def _as_float_tensor(value: object, dtype: torch.dtype) -> torch.Tensor:
    """A CPU tensor from a tensor (any device), array or nested sequence."""
    if torch.is_tensor(value):
        return value.detach().to(device="cpu", dtype=dtype)
    return torch.as_tensor(np.asarray(value), dtype=dtype)


def normalize_source_grid(source_grid: object) -> torch.Tensor:
    """Centre cortical coordinates by their column means and divide by the global max |value|.

    One scale for all columns keeps the sheet's aspect ratio. The result has max |value| 1, so
    normalising again changes it only by float rounding (checkpoint buffers are stored this way).
    A grid with a single distinct point stays all zeros instead of dividing by zero.

    Args:
        source_grid: (n, d) coordinates, any unit (the Sensorium baseline passes µm).

    Returns:
        (n, d) float32 tensor.
    """
    grid = _as_float_tensor(source_grid, torch.float64)
    if grid.dim() != 2 or grid.shape[0] < 1 or grid.shape[1] < 1:
        raise TopoError(
            "source grid must be a 2-d array of neuron coordinates",
            field="source_grid",
            expected="(n_neurons, dims)",
            found=tuple(grid.shape),
        )
    if not torch.isfinite(grid).all():
        raise TopoError("source grid holds NaN or infinite values", field="source_grid")
    grid = grid - grid.mean(dim=0, keepdim=True)
    scale = grid.abs().max()
    if scale > 0:
        grid = grid / scale
    return grid.to(torch.float32)


def grid_mean_predictor_mlp(
    input_dimensions: int,
    hidden_layers: int = 0,
    hidden_features: int = 20,
    final_tanh: bool = False,
) -> nn.Sequential:
    """The MLP that maps cortical coordinates to readout positions (μ).

    Linear(d → hidden, or → 2 without hidden layers), then per hidden layer ELU and Linear, then an
    optional Tanh; default torch init. Indices match neuralpredictors, so the baseline
    (1 hidden layer of 30, tanh) has keys ``mu_transform.0.*`` and ``mu_transform.2.*``.
    """
    if input_dimensions < 1 or hidden_layers < 0 or hidden_features < 1:
        raise TopoError(
            "bad grid mean predictor size",
            field="grid_mean_predictor",
            expected="input_dimensions >= 1, hidden_layers >= 0, hidden_features >= 1",
            found=(input_dimensions, hidden_layers, hidden_features),
        )
    layers: list[nn.Module] = [
        nn.Linear(input_dimensions, hidden_features if hidden_layers > 0 else 2)
    ]
    for i in range(hidden_layers):
        layers += [
            nn.ELU(),
            nn.Linear(hidden_features, hidden_features if i < hidden_layers - 1 else 2),
        ]
    if final_tanh:
        layers.append(nn.Tanh())
    return nn.Sequential(*layers)
