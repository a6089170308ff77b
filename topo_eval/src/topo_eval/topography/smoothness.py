"""Tuning similarity against cortical distance, and TDANN's smoothness of such a curve: how much
more alike near units are than far ones (its V1 and VTC smoothness analyses).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.spatial.distance import pdist, squareform

from topo_eval.topography.maps import as_coords, as_values
from topo_models import TopoError


def max_distance(hypercolumn_mm: float) -> float:
    """TDANN's distance cutoff for V1 curves, ``sqrt(2 (4/3 hcw)^2) / 2`` mm: half the diagonal
    of a square 4/3 hypercolumns wide (hcw 3.5 mm for its V1-like layers at human scale)."""
    if not hypercolumn_mm > 0:
        raise TopoError(
            "the hypercolumn size must be positive",
            field="hypercolumn_mm",
            expected="> 0",
            found=hypercolumn_mm,
        )
    return float(np.sqrt(2 * (4 / 3 * hypercolumn_mm) ** 2) / 2)


@dataclass
class DistanceCurves:
    """Mean pair statistic per distance bin, per random sample of units."""

    bin_edges: np.ndarray  # (n_bins + 1,) mm, from 0 to max_dist
    curves: np.ndarray  # (n_samples, n_bins); NaN where a bin holds no pair
    chance: np.ndarray  # (n_samples, n_bins) the same with the sample's positions shuffled

    @property
    def bin_centres(self) -> np.ndarray:
        return (self.bin_edges[1:] + self.bin_edges[:-1]) / 2


def distance_curves(
    coords: np.ndarray,
    pair_values: Callable[[np.ndarray], np.ndarray],
    max_dist: float,
    *,
    n_samples: int = 20,
    sample_size: int = 1000,
    n_bins: int = 9,
    seed: int = 0,
) -> DistanceCurves:
    """Mean of a pair statistic in ``n_bins`` equal distance bins up to ``max_dist`` (pairs
    further apart are dropped), for ``n_samples`` random samples of ``sample_size`` units
    (all units if fewer). Each pair (i < j) counts once; non-finite statistics are skipped.
    The chance curve bins the same pairs at the distances of a random permutation of the
    sample's positions.

    Args:
        coords: (units, 2) mm.
        pair_values: maps the sample's unit indices (m,) to an (m, m) matrix of the statistic.
    """
    coords = as_coords(coords)
    if not max_dist > 0 or n_bins < 1 or n_samples < 1 or sample_size < 2 or len(coords) < 2:
        raise TopoError(
            "distance curves need max_dist > 0, >= 1 bin and sample, and >= 2 units",
            field="max_dist",
            expected="max_dist > 0, n_bins >= 1, n_samples >= 1, >= 2 units",
            found=(max_dist, n_bins, n_samples, len(coords)),
        )
    rng = np.random.default_rng(seed)
    m = min(sample_size, len(coords))
    edges = np.linspace(0.0, max_dist, n_bins + 1)
    curves = np.full((2, n_samples, n_bins), np.nan)

    def binned(distances: np.ndarray, stats: np.ndarray) -> np.ndarray:
        keep = (distances <= max_dist) & np.isfinite(stats)
        bins = np.minimum((distances[keep] / max_dist * n_bins).astype(np.int64), n_bins - 1)
        counts = np.bincount(bins, minlength=n_bins)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.bincount(bins, stats[keep], minlength=n_bins) / counts

    for sample in range(n_samples):
        index = rng.choice(len(coords), size=m, replace=False)
        # condensed upper triangles (pairs i < j, row by row), as pdist orders them
        stats = squareform(np.asarray(pair_values(index), dtype=np.float64), checks=False)
        for kind, order in enumerate((index, rng.permutation(index))):
            curves[kind, sample] = binned(pdist(coords[order]), stats)
    return DistanceCurves(bin_edges=edges, curves=curves[0], chance=curves[1])


def difference_over_distance(
    coords: np.ndarray,
    values: np.ndarray,
    max_dist: float,
    *,
    period: float | None = None,
    n_samples: int = 20,
    sample_size: int = 1000,
    n_bins: int = 9,
    seed: int = 0,
) -> DistanceCurves:
    """Mean |difference| of a unit property (e.g. preferred orientation) per distance bin;
    with a ``period`` the difference wraps (orientation: 100 deg apart counts as 80). TDANN's
    V1 defaults: 20 samples of 1,000 units, 9 bins up to ``max_distance(3.5)``. Units with a
    NaN value (e.g. dead units) are left out before sampling."""
    coords = as_coords(coords)
    values = as_values(values, len(coords), missing_ok=True)
    coords, values = coords[np.isfinite(values)], values[np.isfinite(values)]

    def differences(index: np.ndarray) -> np.ndarray:
        difference = np.abs(values[index, None] - values[None, index])
        if period is not None:
            difference = np.mod(difference, period)
            difference = np.minimum(difference, period - difference)
        return difference

    return distance_curves(
        coords,
        differences,
        max_dist,
        n_samples=n_samples,
        sample_size=sample_size,
        n_bins=n_bins,
        seed=seed,
    )


def smoothness(curve: np.ndarray) -> float:
    """TDANN's smoothness of a difference-vs-distance curve: ``(max - curve[0]) / max`` after
    truncating at the first NaN. 0 when nearby units differ as much as any (a flat curve), near
    1 when neighbours are alike; NaN for an empty or all-zero curve."""
    curve = np.asarray(curve, dtype=np.float64).ravel()
    nan = np.flatnonzero(np.isnan(curve))
    curve = curve[: nan[0]] if len(nan) else curve
    if not len(curve) or not curve.max() > 0:
        return float("nan")
    return float((curve.max() - curve[0]) / curve.max())


def top_quartile_mask(peak_to_peak: np.ndarray, percentile: float = 75) -> np.ndarray:
    """Units whose tuning-curve peak-to-peak is above its ``percentile`` (TDANN keeps the most
    strongly tuned quarter for its V1 smoothness curves). NaN counts as not above."""
    peak_to_peak = np.asarray(peak_to_peak, dtype=np.float64)
    finite = np.isfinite(peak_to_peak)
    if not finite.any():
        return np.zeros(peak_to_peak.shape, dtype=bool)
    cutoff = np.percentile(peak_to_peak[finite], percentile)
    return finite & (np.where(finite, peak_to_peak, -np.inf) > cutoff)
