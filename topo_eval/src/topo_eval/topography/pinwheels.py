"""Pinwheels of an orientation map: winding numbers on a grid, connected candidates, density per
hypercolumn area (TDANN's pinwheel detector, with its winding loop closed).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from topo_eval.topography.maps import SmoothedMap, as_coords, smoothed_map
from topo_models import TopoError

MACAQUE_PINWHEEL_DENSITY = math.pi
"""Pinwheels per hypercolumn area (column spacing squared) in macaque and cat V1 (Kaschube
et al. 2010), TDANN's reference line."""

# the 8 neighbours (di, dj) = (dy, dx) counterclockwise in (x = j, y = i) from +x: E, NE, N, NW,
# W, SW, S, SE; the loop returns to E, so it has 8 increments (TDANN's has 7, not closed)
_LOOP = ((0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1), (-1, 0), (-1, 1))


def _as_grid(grid: object) -> np.ndarray:
    array = np.asarray(grid, dtype=np.float64)
    if array.ndim != 2 or min(array.shape) < 3:
        raise TopoError(
            "an orientation grid must be 2-D and at least 3 x 3",
            field="grid",
            expected="(ny >= 3, nx >= 3) degrees",
            found=array.shape,
        )
    return array


def winding_numbers(grid: np.ndarray) -> np.ndarray:
    """Winding number of the orientation (deg, period 180) around each interior pixel: the sum
    of the 8 increments, each wrapped to [-90, 90), around its closed 8-neighbour loop, / 360.

    ``grid[i, j]`` is at x = j, y = i; the loop runs counterclockwise in that (x, y) frame, so
    a pinwheel whose orientation increases counterclockwise (``0.5 atan2(y - y0, x - x0)``)
    gives +0.5, the opposite -0.5, and a pixel whose loop encloses no singularity exactly 0.
    NaN where a neighbour is NaN.

    Returns:
        (ny - 2, nx - 2): the value of ``grid[i + 1, j + 1]``'s loop at ``[i, j]``.
    """
    grid = _as_grid(grid)
    ny, nx = grid.shape
    ring = [grid[1 + di : ny - 1 + di, 1 + dj : nx - 1 + dj] for di, dj in _LOOP]
    total = np.zeros((ny - 2, nx - 2))
    for here, after in zip(ring, ring[1:] + ring[:1], strict=True):
        total += np.mod(after - here + 90.0, 180.0) - 90.0
    return total / 360.0


def count_pinwheels(
    grid: np.ndarray,
    threshold: float = 0.3,
    mask: np.ndarray | None = None,
    *,
    min_pixels: int = 1,
) -> tuple[int, int]:
    """Number of positive and negative pinwheels of an orientation grid (deg).

    Candidates are interior pixels with winding number > threshold (positive) or < -threshold
    (negative), and ``mask`` True where given; 8-connected candidates of one sign are one
    pinwheel (a singularity between pixels is enclosed by the loops of up to 4 of them).
    ``min_pixels=2`` drops single-pixel components as TDANN did.

    Args:
        mask: (ny, nx) or (ny - 2, nx - 2) bool, e.g. ``SmoothedMap.spread < 0.3``.
    """
    winding = winding_numbers(grid)
    allowed = np.ones(winding.shape, dtype=bool)
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape == np.shape(grid):
            mask = mask[1:-1, 1:-1]
        if mask.shape != winding.shape:
            raise TopoError(
                "the pinwheel mask must match the grid or its interior",
                field="mask",
                expected=f"{np.shape(grid)} or {winding.shape}",
                found=mask.shape,
            )
        allowed = mask
    counts = []
    with np.errstate(invalid="ignore"):
        candidates = (winding > threshold, winding < -threshold)
    for candidate in candidates:
        labels, n = ndimage.label(candidate & allowed, structure=np.ones((3, 3)))
        sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:]
        counts.append(int((sizes >= min_pixels).sum()))
    return counts[0], counts[1]


def pinwheel_density(n_pinwheels: float, sheet_width_mm: float, hypercolumn_mm: float) -> float:
    """Pinwheels per hypercolumn area: ``n / (sheet_width / hypercolumn)^2`` (TDANN; compare
    with ``MACAQUE_PINWHEEL_DENSITY`` = pi)."""
    if not (sheet_width_mm > 0 and hypercolumn_mm > 0):
        raise TopoError(
            "sheet width and hypercolumn size must be positive",
            field="sheet_width_mm",
            expected="> 0",
            found=(sheet_width_mm, hypercolumn_mm),
        )
    return float(n_pinwheels) / (sheet_width_mm / hypercolumn_mm) ** 2


@dataclass
class Pinwheels:
    """Pinwheels of one layer's orientation preferences."""

    n_positive: int
    n_negative: int
    density: float  # (n_positive + n_negative) per hypercolumn area
    map: SmoothedMap  # the smoothed orientation map they were counted on
    winding: np.ndarray  # (ny - 2, nx - 2) winding numbers of map.values


def find_pinwheels(
    coords: np.ndarray,
    orientation_deg: np.ndarray,
    *,
    hypercolumn_mm: float = 3.5,
    width_mm: float = 1.5,
    stride_mm: float = 0.45,
    max_spread: float = 0.3,
    threshold: float = 0.3,
    sheet_width_mm: float | None = None,
    min_pixels: int = 1,
) -> Pinwheels:
    """TDANN's pinwheel count and density: the orientation map smoothed in ``width_mm`` windows
    every ``stride_mm`` (1.5 / 0.45 mm for its V1-like layers at human scale), candidates where
    the windows' circular std / count < ``max_spread`` (3.5 for SOMs). ``sheet_width_mm``
    defaults to the units' x extent. Units without a preference (NaN) are left out."""
    coords = as_coords(coords, len(np.asarray(orientation_deg)))
    smoothed = smoothed_map(coords, orientation_deg, width_mm, stride_mm, period=180.0)
    with np.errstate(invalid="ignore"):
        mask = smoothed.spread < max_spread
    positive, negative = count_pinwheels(smoothed.values, threshold, mask, min_pixels=min_pixels)
    width = float(np.ptp(coords[:, 0])) if sheet_width_mm is None else sheet_width_mm
    return Pinwheels(
        n_positive=positive,
        n_negative=negative,
        density=pinwheel_density(positive + negative, width, hypercolumn_mm),
        map=smoothed,
        winding=winding_numbers(smoothed.values),
    )
