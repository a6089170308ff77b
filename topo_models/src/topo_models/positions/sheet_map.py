"""A layer's unit values drawn as a map over its sheet (figures of training and evaluation)."""

from __future__ import annotations

import math

import numpy as np

UNITS_PER_KERNEL = 15.0  # units a Gaussian of width σ covers at the layer's mean density
CLIP_PERCENTILES = (2.0, 98.0)  # a map's colour scale, so a few outliers do not flatten it
MIN_UNITS = 3.0  # pixels with fewer units' weight (off the sheet, its thin edges) stay blank


def sheet_map(
    coordinates: np.ndarray, values: np.ndarray, pixels: int = 150
) -> tuple[np.ndarray, tuple[float, float, float, float], float]:
    """Gaussian-weighted mean of the units' values on a pixel grid over the sheet.

    ``map(p) = Σ_i w_i(p) v_i / Σ_i w_i(p)`` with ``w_i(p) = exp(-|p - x_i|² / 2σ²)`` (a
    Nadaraya-Watson estimate), σ chosen so that a kernel covers ``UNITS_PER_KERNEL`` units at
    the layer's mean density (``ρ 2πσ² = UNITS_PER_KERNEL``). Unlike a mean per bin it has no
    empty bins where units are sparse and no one-unit bins that read as noise; pixels where
    ``Σ w < MIN_UNITS`` are NaN. Computed on a histogram of the units, smoothed by one
    separable Gaussian (two matrix products).

    Args:
        coordinates: (N, 2) unit positions (x, y), mm.
        values: (N,) one value per unit.
        pixels: grid pixels along the longer side.

    Returns:
        ``(map (rows = y, columns = x), extent for imshow (left, right, bottom, top), σ mm)``.
    """
    low, high = coordinates.min(axis=0), coordinates.max(axis=0)
    sides = high - low
    area = float(np.prod(np.maximum(sides, 0.05 * sides.max() + 1e-9)))  # a line has some width
    sigma = math.sqrt(UNITS_PER_KERNEL * area / (2 * math.pi * len(coordinates)))
    step = float((high - low).max() + 4 * sigma) / pixels
    edges = [np.arange(low[a] - 2 * sigma, high[a] + 2 * sigma + step, step) for a in (0, 1)]
    x, y = coordinates[:, 0], coordinates[:, 1]
    counts = np.histogram2d(x, y, bins=edges)[0]  # (x bins, y bins)
    sums = np.histogram2d(x, y, bins=edges, weights=values)[0]
    gx, gy = (
        np.exp(-((c[:, None] - c[None, :]) ** 2) / (2 * sigma**2))
        for c in ((e[:-1] + e[1:]) / 2 for e in edges)
    )
    weight, total = gx @ counts @ gy.T, gx @ sums @ gy.T
    least = min(MIN_UNITS, len(coordinates) / 2)  # a layer of a few units still shows
    mean = np.where(weight >= least, total / np.maximum(weight, 1e-12), np.nan)
    extent = (edges[0][0], edges[0][-1], edges[1][-1], edges[1][0])  # y grows downwards
    return mean.T, extent, sigma
