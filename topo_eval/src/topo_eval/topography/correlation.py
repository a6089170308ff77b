"""Response correlation against cortical distance: the generic topography check for any trunk
(retina, multi-task, TDANN), whatever its units are tuned to.
"""

from __future__ import annotations

import numpy as np

from topo_eval.topography.maps import as_coords, single_threaded_blas
from topo_eval.topography.smoothness import DistanceCurves, distance_curves
from topo_eval.topography.tuning import as_responses
from topo_models import TopoError


def correlation_vs_distance(
    responses: np.ndarray,
    coords: np.ndarray,
    max_dist: float,
    *,
    n_bins: int = 9,
    sample_size: int = 1000,
    n_samples: int = 20,
    seed: int = 0,
) -> DistanceCurves:
    """Mean Pearson correlation of two units' responses over images, per distance bin (the
    chance curve shuffles the sample's positions). A topographic layer's curve falls with
    distance; pairs with a constant unit are skipped.

    Args:
        responses: (images, units), at least 2 images. coords: (units, 2) mm.
    """
    responses = as_responses(responses)
    coords = as_coords(coords, responses.shape[1])
    if responses.shape[0] < 2:
        raise TopoError(
            "correlations need at least 2 images",
            field="responses",
            expected="(>= 2, units)",
            found=responses.shape,
        )

    def correlations(index: np.ndarray) -> np.ndarray:
        sample = responses[:, index].astype(np.float64)
        sample -= sample.mean(axis=0)
        norms = np.linalg.norm(sample, axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            sample /= np.where(norms > 0, norms, np.nan)
        return sample.T @ sample

    with single_threaded_blas():  # (1000, images) x (images, 1000)
        return distance_curves(
            coords,
            correlations,
            max_dist,
            n_samples=n_samples,
            sample_size=sample_size,
            n_bins=n_bins,
            seed=seed,
        )
