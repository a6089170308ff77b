"""Maps on a regular grid from scattered units: sliding-window means (TDANN's smoother, used for
orientation maps and pinwheels) and Gaussian-weighted means (its category-patch anchor grid).
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from functools import cache

import numpy as np
from threadpoolctl import ThreadpoolController

from topo_models import TopoError


@cache
def _blas() -> ThreadpoolController:
    return ThreadpoolController()  # finds the loaded BLAS libraries once (~1 ms)


def single_threaded_blas() -> AbstractContextManager:
    """Context limiting BLAS to one thread: for matrix products with a small side, where
    OpenBLAS's threads only synchronise (10-20x slower than one thread on 2 busy cores)."""
    return _blas().limit(limits=1, user_api="blas")


def as_coords(coords: object, n_units: int | None = None, field: str = "coords") -> np.ndarray:
    """``coords`` as a finite (units, 2) float64 array in mm (x = column 0, y = column 1)."""
    array = np.asarray(coords, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != 2 or (n_units is not None and len(array) != n_units):
        raise TopoError(
            "coordinates must be (units, 2) in mm, one row per unit",
            field=field,
            expected=f"({'units' if n_units is None else n_units}, 2)",
            found=array.shape,
        )
    if not np.isfinite(array).all():
        raise TopoError(
            "coordinates contain NaN or infinite values", field=field, expected="finite values"
        )
    return array


def as_values(
    values: object, n_units: int, field: str = "values", *, missing_ok: bool = False
) -> np.ndarray:
    """``values`` as a (units,) float64 array; non-finite values raise unless ``missing_ok``
    (they are then NaN: a dead unit has no preferred orientation, a constant one no t)."""
    array = np.asarray(values, dtype=np.float64)
    if array.shape != (n_units,):
        raise TopoError(
            "one value per unit is needed", field=field, expected=(n_units,), found=array.shape
        )
    finite = np.isfinite(array)
    if missing_ok:
        return np.where(finite, array, np.nan)
    if not finite.all():
        raise TopoError(
            "values contain NaN or infinite values",
            field=field,
            expected="finite values",
            found=f"{int(n_units - finite.sum())} non-finite",
        )
    return array


def sheet_extent(
    coords: np.ndarray, extent: tuple[float, float, float, float] | None = None
) -> tuple[float, float, float, float]:
    """(x_min, x_max, y_min, y_max) in mm: ``extent`` if given, else the units' bounding box."""
    if extent is not None:
        return tuple(float(v) for v in extent)
    low, high = coords.min(axis=0), coords.max(axis=0)
    return float(low[0]), float(high[0]), float(low[1]), float(high[1])


@dataclass
class SmoothedMap:
    """A map on a grid: ``values[i, j]`` sits at ``(x_centres[j], y_centres[i])`` (mm)."""

    values: np.ndarray  # (ny, nx); NaN where a window holds no unit
    x_centres: np.ndarray  # (nx,) mm
    y_centres: np.ndarray  # (ny,) mm
    counts: np.ndarray  # (ny, nx) units per window (sum of weights for Gaussian maps)
    spread: np.ndarray  # (ny, nx) circular std (in the period's units) / count; NaN if linear


def _window_starts(low: float, high: float, width: float, stride: float) -> np.ndarray:
    """Left edges of the windows ``[start, start + width]`` that tile ``[low, high]`` by
    ``stride`` (at least one window, starting at ``low``)."""
    n = int(np.floor((high - low - width) / stride + 1e-9)) + 1
    return low + stride * np.arange(max(n, 1))


def _window_range(positions: np.ndarray, low: float, width: float, stride: float, n: int):
    """Indices ``first..last`` of the windows that contain each position (empty if first >
    last): window k holds x when ``low + k stride <= x <= low + k stride + width``."""
    scaled = (positions - low) / stride
    first = np.clip(np.ceil(scaled - width / stride - 1e-9), 0, n).astype(np.int64)
    last = np.clip(np.floor(scaled + 1e-9), -1, n - 1).astype(np.int64)
    return first, last


def smoothed_map(
    coords: np.ndarray,
    values: np.ndarray,
    width_mm: float,
    stride_mm: float,
    period: float | None = None,
    *,
    extent: tuple[float, float, float, float] | None = None,
) -> SmoothedMap:
    """Mean of the units in square windows of side ``width_mm`` every ``stride_mm`` (TDANN's
    smoother; 1.5 / 0.15 mm for its orientation maps, 1.5 / 0.45 mm for pinwheels). With a
    ``period`` (180 for orientation) the mean is circular: 175 and 5 deg average to 0, not 90.

    Each unit adds to the windows that contain it through a 2-D difference array (+1 at one
    corner of its block of windows, -1 past the others) and two cumulative sums, so the cost is
    O(units + windows) for any overlap ``width / stride``.

    Args:
        coords: (units, 2) mm.
        values: (units,); units with a NaN value are left out (counts exclude them).
        extent: (x_min, x_max, y_min, y_max) of the sheet; default the units' bounding box.
    """
    coords = as_coords(coords)
    values = as_values(values, len(coords), missing_ok=True)
    if not (width_mm > 0 and stride_mm > 0):
        raise TopoError(
            "window width and stride must be positive",
            field="width_mm",
            expected="> 0",
            found=(width_mm, stride_mm),
        )
    x_min, x_max, y_min, y_max = sheet_extent(coords, extent)
    coords, values = coords[np.isfinite(values)], values[np.isfinite(values)]
    x_starts = _window_starts(x_min, x_max, width_mm, stride_mm)
    y_starts = _window_starts(y_min, y_max, width_mm, stride_mm)
    nx, ny = len(x_starts), len(y_starts)
    x_first, x_last = _window_range(coords[:, 0], x_min, width_mm, stride_mm, nx)
    y_first, y_last = _window_range(coords[:, 1], y_min, width_mm, stride_mm, ny)
    inside = (x_first <= x_last) & (y_first <= y_last)
    if period is None:
        channels = np.stack([np.ones_like(values), values])
    else:
        phase = 2 * np.pi * values / period
        channels = np.stack([np.ones_like(values), np.cos(phase), np.sin(phase)])
    # +1 at the first corner of each unit's block of windows, -1 just past it in x and in y,
    # +1 past both: the 2-D cumulative sum then adds the unit to exactly its block
    rows = np.concatenate([y_first, y_first, y_last + 1, y_last + 1])
    cols = np.concatenate([x_first, x_last + 1, x_first, x_last + 1])
    signs = np.repeat([1.0, -1.0, -1.0, 1.0], len(values))
    keep = np.tile(inside, 4)
    flat = (rows * (nx + 1) + cols)[keep]
    size = (ny + 1) * (nx + 1)
    sums = np.stack(
        [np.bincount(flat, (signs * np.tile(c, 4))[keep], minlength=size) for c in channels]
    )
    sums = sums.reshape(-1, ny + 1, nx + 1).cumsum(axis=1).cumsum(axis=2)[:, :ny, :nx]
    counts = np.rint(sums[0])
    with np.errstate(invalid="ignore", divide="ignore"):
        occupied = np.where(counts > 0, counts, np.nan)
        if period is None:
            mean, spread = sums[1] / occupied, np.full_like(counts, np.nan)
        else:
            resultant = np.hypot(sums[1], sums[2]) / occupied
            mean = np.mod(np.arctan2(sums[2], sums[1]) * period / (2 * np.pi), period)
            mean[mean >= period] = 0.0  # mod of a tiny negative angle rounds up to the period
            mean[np.isnan(occupied)] = np.nan
            circular_std = np.sqrt(-2 * np.log(np.clip(resultant, 1e-300, 1.0)))
            spread = circular_std * period / (2 * np.pi) / occupied
    return SmoothedMap(
        values=mean,
        x_centres=x_starts + width_mm / 2,
        y_centres=y_starts + width_mm / 2,
        counts=counts,
        spread=spread,
    )


def gaussian_map(
    coords: np.ndarray,
    values: np.ndarray,
    sigma_mm: float,
    grid_size: int = 100,
    *,
    extent: tuple[float, float, float, float] | None = None,
) -> SmoothedMap:
    """Gaussian-weighted mean of ``values`` at a ``grid_size`` x ``grid_size`` anchor grid over
    the sheet (TDANN's category-patch smoothing, sigma 2.4 mm at human scale). The weight
    ``exp(-d^2 / 2 sigma^2)`` factorises into x and y parts, so the sums are two matrix
    products of (grid, units) factors instead of a (grid^2, units) distance matrix.
    ``counts`` holds the sum of the weights; units with a NaN value are left out."""
    coords = as_coords(coords)
    values = as_values(values, len(coords), missing_ok=True)
    if not sigma_mm > 0 or int(grid_size) < 2:
        raise TopoError(
            "sigma must be positive and the grid at least 2 x 2",
            field="sigma_mm",
            expected="sigma_mm > 0, grid_size >= 2",
            found=(sigma_mm, grid_size),
        )
    x_min, x_max, y_min, y_max = sheet_extent(coords, extent)
    coords, values = coords[np.isfinite(values)], values[np.isfinite(values)]
    x_centres = np.linspace(x_min, x_max, int(grid_size))
    y_centres = np.linspace(y_min, y_max, int(grid_size))
    weight_x = np.exp(-((x_centres[:, None] - coords[None, :, 0]) ** 2) / (2 * sigma_mm**2))
    weight_y = np.exp(-((y_centres[:, None] - coords[None, :, 1]) ** 2) / (2 * sigma_mm**2))
    with (
        single_threaded_blas(),  # (grid, units) x (units, grid)
        np.errstate(invalid="ignore", divide="ignore"),
    ):
        total = weight_y @ weight_x.T
        mean = (weight_y * values) @ weight_x.T / total
    return SmoothedMap(
        values=mean,
        x_centres=x_centres,
        y_centres=y_centres,
        counts=total,
        spread=np.full_like(total, np.nan),
    )
