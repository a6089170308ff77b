"""Precomputed neighbourhoods: the unit sets the spatial loss compares, as TDANN builds them.

spacetorch's ``precompute_neighborhoods`` + ``collapse_and_trim_neighborhoods``: square
windows of side ``width_mm`` dropped uniformly inside the sheet, each holding every unit inside
it; then a rectangular array is made by keeping the windows with at least ``final`` units and
subsampling each to exactly ``final``, where
``final = min(max(5th percentile of window sizes, min_size), max_size)``. "~500 units" is a cap.

Vectorised: units are sorted by x once, so a window's candidates are one contiguous slab of the
sorted order (found with ``searchsorted``); windows are processed in chunks as a
(windows, slab length) membership mask, and subsampled by giving members random keys,
non-members +inf, and keeping the ``final`` smallest keys.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from topo_models.errors import TopoError

# Elements of one (windows x slab) chunk; ~30 bytes each in temporaries, so ~120 MB at most.
_MAX_CHUNK_ELEMENTS = 4_000_000


def precompute_neighborhoods(
    coordinates: np.ndarray,
    width_mm: float,
    n_neighborhoods: int,
    seed: int,
    min_size: int = 25,
    max_size: int = 500,
    *,
    return_windows: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw ``n_neighborhoods`` square windows and trim them to a (P, Q) index array.

    Window centres are uniform in ``[min + r, max - r]`` per axis (r = width / 2, the sheet being
    the coordinates' bounding box), so every window lies inside the sheet. Where the window is
    wider than the sheet on an axis, its width is clamped to the sheet's extent on that axis
    (the window then spans the whole axis) instead of failing. A unit is inside when
    ``cx - r <= x <= cx + r`` and ``cy - r <= y <= cy + r``.

    ``final`` is also capped at the number of units N, and is at least 2, so layers smaller
    than ``min_size`` still get neighbourhoods (windows must then hold every unit).

    Args:
        coordinates: (N, 2) unit positions in mm (x, y).
        width_mm: side length of the square window, mm.
        n_neighborhoods: windows to draw before trimming (TDANN: 20,000).
        seed: seeds both the window centres and the subsampling; same seed, same array.
        min_size: lower bound on the trimmed size (TDANN: 25).
        max_size: upper bound on the trimmed size (TDANN: 500).
        return_windows: also return the (n_neighborhoods, 2) centres of all drawn windows and
            the boolean mask of the kept ones (rows of the result = ``centres[kept]``).

    Returns:
        (P, Q) int64 unit indices, each row sorted, P <= n_neighborhoods, Q = ``final``.
    """
    coords = _check_inputs(coordinates, width_mm, n_neighborhoods, seed, min_size, max_size)
    n_units = len(coords)
    rng = np.random.default_rng(seed)
    low, high = coords.min(axis=0), coords.max(axis=0)
    half = np.minimum(width_mm / 2.0, (high - low) / 2.0)  # per-axis half width, clamped
    centres = rng.uniform(low + half, high - half, size=(n_neighborhoods, 2))

    # Sort units by x: a window's x-range is then the slab order[start:start + slab].
    order = np.argsort(coords[:, 0], kind="stable")
    xs, ys = coords[order, 0], coords[order, 1]
    start = np.searchsorted(xs, centres[:, 0] - half[0], side="left")
    slab = np.searchsorted(xs, centres[:, 0] + half[0], side="right") - start
    longest = max(int(slab.max()), 1)
    # Row s of this view is ys[s : s + longest]; NaN padding is never inside a window.
    ys_view = sliding_window_view(np.concatenate([ys, np.full(longest, np.nan)]), longest)
    y_low, y_high = centres[:, 1] - half[1], centres[:, 1] + half[1]
    chunk = max(1, _MAX_CHUNK_ELEMENTS // longest)

    def members(windows: np.ndarray) -> np.ndarray:
        """(len(windows), slab length) mask of the units inside each window."""
        width = max(int(slab[windows].max()), 1)
        y = ys_view[:, :width][start[windows]]
        inside = (y >= y_low[windows, None]) & (y <= y_high[windows, None])
        return inside & (np.arange(width) < slab[windows, None])

    all_windows = np.arange(n_neighborhoods)
    sizes = np.concatenate([members(w).sum(axis=1) for _, w in _chunks(all_windows, chunk)])
    n_size = max(float(np.percentile(sizes, 5)), min_size)
    final = max(int(min(n_size, max_size, n_units)), 2)
    kept = sizes >= final
    if not kept.any():
        raise TopoError(
            "no neighbourhood window holds enough units: the width is too small for the "
            "layer's density",
            field="neighborhood_width",
            expected=f"windows of at least {final} units",
            found=(
                f"width {width_mm:g} mm, {n_units} units, median window {np.median(sizes):g} "
                f"units, largest {sizes.max()}"
            ),
        )

    kept_windows = np.flatnonzero(kept)
    indices = np.empty((len(kept_windows), final), dtype=np.int64)
    for offset, windows in _chunks(kept_windows, chunk):
        mask = members(windows)
        keys = rng.random(mask.shape, dtype=np.float32)
        keys[~mask] = np.inf
        picked = np.argpartition(keys, final - 1, axis=1)[:, :final]
        rows = order[start[windows, None] + picked]
        rows.sort(axis=1)
        indices[offset : offset + len(windows)] = rows
    if return_windows:
        return indices, centres, kept
    return indices


def _chunks(items: np.ndarray, size: int) -> list[tuple[int, np.ndarray]]:
    """(offset, slice) pairs covering ``items`` in slices of ``size``."""
    return [(i, items[i : i + size]) for i in range(0, len(items), size)]


def _check_inputs(
    coordinates: np.ndarray,
    width_mm: float,
    n_neighborhoods: int,
    seed: int,
    min_size: int,
    max_size: int,
) -> np.ndarray:
    """Validated float64 (N, 2) copy of the coordinates."""
    coords = np.asarray(coordinates)
    if coords.ndim != 2 or coords.shape[1] != 2 or not np.issubdtype(coords.dtype, np.number):
        raise TopoError(
            "coordinates must be an (N, 2) numeric array",
            field="coordinates",
            found=f"shape {coords.shape}, dtype {coords.dtype}",
        )
    if len(coords) < 2:
        raise TopoError(
            "a neighbourhood needs at least 2 units", field="coordinates", found=len(coords)
        )
    coords = coords.astype(np.float64)
    if not np.isfinite(coords).all():
        raise TopoError("coordinates must be finite", field="coordinates")
    if not (np.isfinite(width_mm) and width_mm > 0):
        raise TopoError("width must be positive mm", field="width_mm", found=width_mm)
    for name, value, least in (
        ("n_neighborhoods", n_neighborhoods, 1),
        ("seed", seed, 0),
        ("min_size", min_size, 1),
        ("max_size", max_size, 2),
    ):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
            raise TopoError(
                f"bad {name}", field=name, expected=f"an integer >= {least}", found=value
            )
    return coords
