"""Category selectivity in a VTC-like layer: Welch t and d' maps, patches, RSA against another
set of maps and co-localisation of categories (TDANN's VTC analyses, after the fLoc localizer).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage, stats
from scipy.spatial import Delaunay, cKDTree

from topo_eval.topography.maps import as_coords, as_values, gaussian_map
from topo_eval.topography.smoothness import DistanceCurves, difference_over_distance
from topo_eval.topography.tuning import as_responses
from topo_models import TopoError

# TDANN's patch criteria at human scale (70 mm sheet); scale them with the sheet
PATCH_SIGMA_MM = 2.4
PATCH_MIN_AREA_MM2 = 100.0
PATCH_MAX_AREA_MM2 = 4500.0


def _split(responses: np.ndarray, on: object) -> tuple[np.ndarray, np.ndarray]:
    responses = as_responses(responses)
    on = np.asarray(on)
    if on.dtype != bool or on.shape != (responses.shape[0],):
        raise TopoError(
            "'on' must be a boolean mask with one entry per image",
            field="on",
            expected=f"bool ({responses.shape[0]},)",
            found=f"{on.dtype} {on.shape}",
        )
    n_on = int(on.sum())
    if n_on < 2 or len(on) - n_on < 2:
        raise TopoError(
            "selectivity needs at least 2 on-category and 2 other images",
            field="on",
            expected=">= 2 True and >= 2 False",
            found=f"{n_on} True, {len(on) - n_on} False",
        )
    return responses[on], responses[~on]


def _moments(group: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return group.mean(axis=0, dtype=np.float64), group.var(axis=0, ddof=1, dtype=np.float64)


def selectivity_t(responses: np.ndarray, on: np.ndarray) -> np.ndarray:
    """Welch t per unit, on-category images against all others: ``(m_on - m_off) /
    sqrt(s_on^2 / n_on + s_off^2 / n_off)`` (sample variances; TDANN's selectivity).

    Args:
        responses: (images, units). on: (images,) bool.
    """
    inside, outside = _split(responses, on)
    (m_on, v_on), (m_off, v_off) = _moments(inside), _moments(outside)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (m_on - m_off) / np.sqrt(v_on / len(inside) + v_off / len(outside))


def d_prime(responses: np.ndarray, on: np.ndarray) -> np.ndarray:
    """d' per unit: ``(m_on - m_off) / sqrt((v_on + v_off) / 2)``, sample variances; unlike t
    it does not grow with the number of images."""
    inside, outside = _split(responses, on)
    (m_on, v_on), (m_off, v_off) = _moments(inside), _moments(outside)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (m_on - m_off) / np.sqrt((v_on + v_off) / 2)


def selectivity_maps(
    responses: np.ndarray, labels: object, *, measure: str = "t"
) -> tuple[np.ndarray, np.ndarray]:
    """One selectivity map per category, each category against all the other images.

    Returns:
        categories: (k,) sorted labels; maps: (k, units).
    """
    labels = np.asarray(labels)
    categories = np.unique(labels)
    if len(categories) < 2 or labels.shape != (np.shape(responses)[0],):
        raise TopoError(
            "selectivity needs one label per image and at least 2 categories",
            field="labels",
            expected=f"({np.shape(responses)[0]},) with >= 2 categories",
            found=f"{labels.shape} with {len(categories)} categories",
        )
    if measure not in ("t", "d_prime"):
        raise TopoError("unknown selectivity measure", field="measure", expected="t or d_prime")
    function = selectivity_t if measure == "t" else d_prime
    return categories, np.stack([function(responses, labels == c) for c in categories])


@dataclass
class Patch:
    """One category-selective patch."""

    category: str
    area_mm2: float  # area of the alpha shape of its units
    n_units: int
    centre_mm: np.ndarray  # (2,) mean position of its units
    mask: np.ndarray  # (grid, grid) bool: its pixels on the smoothed anchor grid
    units: np.ndarray  # (n_units,) indices of its units


def alpha_shape_area(points: np.ndarray, alpha_per_mm: float) -> float:
    """Area (mm^2) of the alpha shape of points (n, 2): the Delaunay triangles whose
    circumradius is below ``1 / alpha`` (TDANN's concave hull, alpha 0.1 per mm)."""
    if len(points) < 3 or np.linalg.matrix_rank(points - points.mean(axis=0)) < 2:
        return 0.0
    a, b, c = np.moveaxis(points[Delaunay(points).simplices], 1, 0)
    ab, bc, ca = (np.linalg.norm(u - v, axis=1) for u, v in ((a, b), (b, c), (c, a)))
    (ux, uy), (vx, vy) = (b - a).T, (c - a).T
    area = np.abs(ux * vy - uy * vx) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        radius = ab * bc * ca / (4 * area)
    return float(area[radius < 1.0 / alpha_per_mm].sum())


def find_patches(
    coords: np.ndarray,
    t: np.ndarray,
    *,
    sigma_mm: float = PATCH_SIGMA_MM,
    threshold: float = 2.0,
    min_area_mm2: float = PATCH_MIN_AREA_MM2,
    max_area_mm2: float = PATCH_MAX_AREA_MM2,
    min_units: int = 10,
    grid_size: int = 100,
    category: str = "",
    unit_radius_mm: float = 1.0,
    alpha_per_mm: float = 0.1,
) -> list[Patch]:
    """TDANN's patches: t smoothed with a Gaussian (``sigma_mm``) onto a ``grid_size``^2 anchor
    grid, thresholded at ``threshold``, 8-connected components; a component's units are those
    within ``unit_radius_mm`` of one of its pixels (nearest component if several); kept if its
    units' alpha shape has ``min_area_mm2 <= area <= max_area_mm2`` and >= ``min_units`` units.
    Defaults are TDANN's at human scale (70 mm sheet)."""
    coords = as_coords(coords)
    t = as_values(t, len(coords), "t", missing_ok=True)  # NaN: constant units, left out
    smoothed = gaussian_map(coords, t, sigma_mm, grid_size)
    with np.errstate(invalid="ignore"):
        labels, n = ndimage.label(smoothed.values > threshold, structure=np.ones((3, 3)))
    if n == 0:
        return []
    rows, cols = np.nonzero(labels)
    pixels = np.stack([smoothed.x_centres[cols], smoothed.y_centres[rows]], axis=1)
    distance, nearest = cKDTree(pixels).query(coords, distance_upper_bound=unit_radius_mm)
    owner = np.zeros(len(coords), dtype=np.int64)
    found = np.isfinite(distance)
    owner[found] = labels[rows[nearest[found]], cols[nearest[found]]]
    patches = []
    for label in range(1, n + 1):  # a handful of components
        units = np.flatnonzero(owner == label)
        area = alpha_shape_area(coords[units], alpha_per_mm)
        if len(units) >= min_units and min_area_mm2 <= area <= max_area_mm2:
            patches.append(
                Patch(
                    category=category,
                    area_mm2=area,
                    n_units=len(units),
                    centre_mm=coords[units].mean(axis=0),
                    mask=labels == label,
                    units=units,
                )
            )
    return patches


def selectivity_smoothness(
    coords: np.ndarray,
    t: np.ndarray,
    mean_response: np.ndarray,
    *,
    max_dist_mm: float = 60.0,
    min_mean_response: float = 0.5,
    n_samples: int = 25,
    sample_size: int = 500,
    n_bins: int = 9,
    seed: int = 0,
) -> DistanceCurves:
    """TDANN's VTC selectivity smoothness: |delta t| against distance among units whose mean
    response exceeds ``min_mean_response`` (25 samples of 500 units, 60 mm cutoff at human
    scale); score each curve with ``smoothness.smoothness``."""
    coords = as_coords(coords)
    responsive = as_values(mean_response, len(coords), "mean_response") > min_mean_response
    if responsive.sum() < 2:
        raise TopoError(
            "fewer than 2 units respond above the threshold",
            field="mean_response",
            expected=f"> {min_mean_response} for >= 2 units",
            found=int(responsive.sum()),
        )
    return difference_over_distance(
        coords[responsive],
        as_values(t, len(coords), "t", missing_ok=True)[responsive],
        max_dist_mm,
        n_samples=n_samples,
        sample_size=sample_size,
        n_bins=n_bins,
        seed=seed,
    )


def _as_maps(
    maps: object, field: str, min_categories: int, *, missing_ok: bool = False
) -> np.ndarray:
    array = np.asarray(maps, dtype=np.float64)
    if array.ndim != 2 or len(array) < min_categories or array.shape[1] < 2:
        raise TopoError(
            f"selectivity maps must be (categories >= {min_categories}, units >= 2)",
            field=field,
            expected=f"(>= {min_categories}, >= 2)",
            found=array.shape,
        )
    if not missing_ok and not np.isfinite(array).all():
        raise TopoError("selectivity maps contain NaN", field=field, expected="finite values")
    return array


def representational_similarity(maps: np.ndarray) -> np.ndarray:
    """(categories, categories) Pearson correlations between selectivity maps across units."""
    return np.corrcoef(_as_maps(maps, "maps", 2))


def category_rsa(maps_a: np.ndarray, maps_b: np.ndarray) -> float:
    """Kendall's tau between the lower triangles of two RSMs (TDANN's model-to-human VTC
    similarity). The maps may cover different units (model units, voxels) but the same
    categories in the same order; at least 3 categories, so there are pairs to rank."""
    maps_a, maps_b = _as_maps(maps_a, "maps_a", 3), _as_maps(maps_b, "maps_b", 3)
    if len(maps_a) != len(maps_b):
        raise TopoError(
            "both map sets need the same categories",
            field="maps_b",
            expected=len(maps_a),
            found=len(maps_b),
        )
    lower = np.tril_indices(len(maps_a), k=-1)
    return float(stats.kendalltau(np.corrcoef(maps_a)[lower], np.corrcoef(maps_b)[lower])[0])


def colocalisation(
    coords: np.ndarray, t_maps: np.ndarray, window_mm: float, t_threshold: float = 4.0
) -> np.ndarray:
    """How much categories share territory: in non-overlapping square windows tiling the sheet,
    the fraction of units with t > ``t_threshold`` per category; the Spearman r of those
    fractions across windows, as ``(1 + r) / 2`` (TDANN: 7 mm windows at human scale; high for
    faces-bodies, low for faces-places). Windows without units are skipped.

    Returns:
        (categories, categories), NaN where a category's fraction is constant.
    """
    coords = as_coords(coords)
    t_maps = _as_maps(t_maps, "t_maps", 2, missing_ok=True)  # NaN t: not selective
    if t_maps.shape[1] != len(coords) or not window_mm > 0:
        raise TopoError(
            "one t per unit and category, and a positive window, are needed",
            field="t_maps",
            expected=f"(categories, {len(coords)}), window_mm > 0",
            found=(t_maps.shape, window_mm),
        )
    cell = np.floor((coords - coords.min(axis=0)) / window_mm).astype(np.int64)
    _, window = np.unique(cell, axis=0, return_inverse=True)
    window = window.ravel()
    counts = np.bincount(window)
    fractions = np.stack(
        [
            np.bincount(window, selective, minlength=len(counts)) / counts
            for selective in (t_maps > t_threshold).astype(np.float64)
        ]
    )  # (categories, windows)
    ranks = stats.rankdata(fractions, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (1.0 + np.corrcoef(ranks)) / 2.0
