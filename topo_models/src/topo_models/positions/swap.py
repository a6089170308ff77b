"""TDANN's swap pre-optimisation: permute units on the sheet so correlated units sit close.

Greedy pairwise swaps inside random square windows (side = the layer's neighbourhood width),
``proposals_per_window`` per window; a swap of units a and b is kept when it lowers the relative
spatial loss of their two rows of the window's response-correlation matrix against 1/(d + 1)
(self-pairs included, constant units correlate 0). Then neighbourhoods are recomputed
(Margalit et al. 2024; see docs/tdann.md).

Speed without changing the result:

* A swap only exchanges two rows of distances, so the sums of s and s² over the two rows stay
  the same and Pearson improves iff Σ_j (r_aj − r_bj)(s_bj − s_aj) > 0 over the other units j:
  one dot product per proposal instead of a full Pearson.
* Windows whose squares do not overlap touch disjoint units and commute. Each window gets a
  level one above the last earlier window it overlaps; all windows of a level run as one batch,
  in lockstep over their proposals. The result equals running them one by one in drawing order
  (``batch=False``), bit for bit, because every window is padded to the same width.
* Every window draws from its own generator seeded by (seed, window index) — TDANN re-seeded
  one generator with 424 in every window, ignoring its ``seed`` argument.
"""

from __future__ import annotations

import numpy as np
import torch

from topo_models.errors import TopoError
from topo_models.positions.layer_positions import LayerPositions
from topo_models.positions.neighborhoods import precompute_neighborhoods

MIN_WINDOW_UNITS = 5
MAX_WINDOW_UNITS = 500
_LEVEL_CELLS = 64  # resolution of the raster that orders overlapping windows


def _window_centres(coords: np.ndarray, width: float, n_windows: int, seed: int) -> np.ndarray:
    """(n, 2) centres, uniform so that each square lies inside the sheet (clamped if wider)."""
    low, high = coords.min(axis=0), coords.max(axis=0)
    half = np.minimum(width, high - low) / 2
    centres = np.empty((n_windows, 2))
    for index in range(n_windows):
        rng = np.random.default_rng([seed, index, 0])
        centres[index] = rng.uniform(low + half, high - half)
    return centres


def _levels(centres: np.ndarray, width: float, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Level of each window: 1 + the highest level of an earlier window that may overlap it.

    A raster of the sheet keeps the highest level of any window covering each cell; windows
    that overlap share a cell, so ordering by level respects every overlap (extra ordering
    between windows that merely share a cell is harmless).
    """
    extent = np.maximum(high - low, 1e-12)
    raster = np.zeros((_LEVEL_CELLS, _LEVEL_CELLS), dtype=np.int64)
    first = np.clip(
        ((centres - width / 2 - low) / extent * _LEVEL_CELLS).astype(int), 0, _LEVEL_CELLS - 1
    )
    last = np.clip(
        ((centres + width / 2 - low) / extent * _LEVEL_CELLS).astype(int), 0, _LEVEL_CELLS - 1
    )
    levels = np.empty(len(centres), dtype=np.int64)
    for index, ((x0, y0), (x1, y1)) in enumerate(zip(first, last, strict=True)):
        cells = raster[x0 : x1 + 1, y0 : y1 + 1]
        levels[index] = cells.max() + 1
        cells[...] = levels[index]
    return levels


class _Sheet:
    """The fixed set of coordinate slots and which unit occupies each (swaps trade slots).

    Slots are sorted by x once, so the units inside a window come from one ``searchsorted``
    slab instead of a scan of the whole layer.
    """

    def __init__(self, coords: np.ndarray) -> None:
        self.slot_coords = coords.copy()
        self.occupant = np.arange(len(coords))  # slot → unit
        self.slot_of_unit = np.arange(len(coords))  # unit → slot
        self.order = np.argsort(coords[:, 0], kind="stable")
        self.sorted_x = coords[self.order, 0]

    def slots_inside(self, centre: np.ndarray, side: np.ndarray) -> np.ndarray:
        """The slots inside a window; fixed, whatever the swaps."""
        half = side / 2
        start = np.searchsorted(self.sorted_x, centre[0] - half[0], side="left")
        stop = np.searchsorted(self.sorted_x, centre[0] + half[0], side="right")
        slots = self.order[start:stop]
        return slots[np.abs(self.slot_coords[slots, 1] - centre[1]) <= half[1]]

    def members(
        self, centre: np.ndarray, side: np.ndarray, index: int, seed: int
    ) -> np.ndarray | None:
        """Units inside the window now (capped at 500 by a seeded draw); None if below 5."""
        inside = np.sort(self.occupant[self.slots_inside(centre, side)])
        if len(inside) < MIN_WINDOW_UNITS:
            return None
        if len(inside) > MAX_WINDOW_UNITS:
            rng = np.random.default_rng([seed, index, 1])
            inside = np.sort(rng.choice(inside, MAX_WINDOW_UNITS, replace=False))
        return inside

    def move(self, units: np.ndarray, slots: np.ndarray) -> None:
        self.slot_of_unit[units] = slots
        self.occupant[slots] = units

    def coordinates(self) -> np.ndarray:
        return self.slot_coords[self.slot_of_unit]


def _proposals(count: int, n_proposals: int, index: int, seed: int) -> np.ndarray:
    """(n_proposals, 2) distinct local unit pairs of one window."""
    rng = np.random.default_rng([seed, index, 2])
    a = rng.integers(0, count, n_proposals)
    b = rng.integers(0, count - 1, n_proposals)
    return np.stack([a, b + (b >= a)], axis=1)


def _run_batch(
    sheet: _Sheet,
    standardised: np.ndarray,
    members: list[np.ndarray],
    proposals: np.ndarray,
    width: int,
) -> None:
    """Run the proposals of disjoint windows in lockstep; record accepted swaps in ``sheet``.

    NumPy, not torch: a step is ~15 small array operations, where per-call overhead dominates.
    """
    groups = len(members)
    correlation = np.zeros((groups, width, width))
    state = np.zeros((groups, width, 3))  # x, y, slot of each member
    for g, units in enumerate(members):
        z = standardised[:, units]
        correlation[g, : len(units), : len(units)] = z.T @ z  # one product per window, as
        slots = sheet.slot_of_unit[units]  # when windows run one by one
        state[g, : len(units), :2] = sheet.slot_coords[slots]
        state[g, : len(units), 2] = slots
    x, y = state[:, :, 0], state[:, :, 1]  # views: swaps written to `state` move them too
    rows = np.arange(groups)
    flat = state.reshape(groups * width, 3)
    flat_correlation = correlation.reshape(groups * width, width)
    flat_pairs = proposals + (rows * width)[:, None, None]  # (G, T, 2) rows of the flat views
    for step in range(proposals.shape[1]):
        a, b = proposals[:, step, 0], proposals[:, step, 1]
        fa, fb = flat_pairs[:, step, 0], flat_pairs[:, step, 1]
        difference = flat_correlation[fa] - flat_correlation[fb]  # r_aj − r_bj; 0 on padding
        difference[rows, a] = 0.0  # the pair's own entries cancel exactly
        difference[rows, b] = 0.0
        at_a, at_b = flat[fa], flat[fb]  # (G, 3) copies
        pair = np.stack([at_a, at_b], axis=1)  # (G, 2, 3)
        dx = x[:, None, :] - pair[:, :, 0:1]
        dy = y[:, None, :] - pair[:, :, 1:2]
        dx *= dx
        dy *= dy
        dx += dy
        np.sqrt(dx, out=dx)
        dx += 1.0
        similarity = np.reciprocal(dx, out=dx)  # (G, 2, W): 1/(1 + d) from a and from b
        gains = np.matmul(similarity, difference[:, :, None])[:, :, 0]  # Σ_j rd_j·s_kj
        accept = (gains[:, 1] > gains[:, 0])[:, None]  # Σ rd·(s_b − s_a) > 0
        flat[fa] = np.where(accept, at_b, at_a)
        flat[fb] = np.where(accept, at_a, at_b)
    for g, units in enumerate(members):
        sheet.move(units, state[g, : len(units), 2].astype(np.int64))


def swap_optimize(
    layer_positions: LayerPositions,
    responses: np.ndarray | torch.Tensor,
    n_windows: int,
    proposals_per_window: int = 500,
    seed: int = 0,
    batch: bool = True,
    progress: bool = False,
) -> LayerPositions:
    """Swap-optimised copy of ``layer_positions`` (same coordinates, permuted among units).

    Args:
        layer_positions: the layer's positions; its ``neighborhood_width`` is the window side
            and its number of neighbourhood rows is kept when they are recomputed.
        responses: (images, units) responses of the layer (e.g. to the 640 sine gratings),
            units in the positions' flat order.
        n_windows: windows to visit (TDANN: 100,000 per layer).
        proposals_per_window: swap proposals per window (TDANN: 500).
        seed: seeds window placement, the 500-unit cap and the proposals.
        batch: run non-overlapping windows together (same result as one by one).
        progress: show a progress bar (tqdm, when installed) over the windows.
    """
    x = torch.as_tensor(responses, dtype=torch.float64)
    if x.dim() != 2 or x.shape[1] != len(layer_positions) or x.shape[0] < 2:
        raise TopoError(
            "responses must be (images, units) for this layer",
            field="responses",
            expected=f"(>= 2, {len(layer_positions)})",
            found=tuple(x.shape),
        )
    if n_windows < 1 or proposals_per_window < 1:
        raise TopoError(
            "need at least one window and one proposal",
            field="n_windows",
            found=(n_windows, proposals_per_window),
        )
    centred = x - x.mean(dim=0)
    norms = centred.norm(dim=0)
    standardised = torch.where(norms > 0, centred / norms.clamp_min(1e-300), 0.0).numpy()
    coords = np.array(layer_positions.coordinates, dtype=np.float64)
    width = float(layer_positions.neighborhood_width)
    low, high = coords.min(axis=0), coords.max(axis=0)
    side = np.minimum(width, high - low)
    centres = _window_centres(coords, width, n_windows, seed)
    levels = _levels(centres, float(side.max()), low, high) if batch else np.arange(n_windows)
    sheet = _Sheet(coords)
    # A window always holds the same slots (swaps only trade occupants), so the widest window
    # is known up front; padding every window to it makes batched and one-by-one runs equal.
    padded = max(sheet.slots_inside(centre, side).size for centre in centres)
    padded = max(MIN_WINDOW_UNITS, min(MAX_WINDOW_UNITS, padded))
    bar = _progress(n_windows, progress)
    for level in np.unique(levels):
        chosen = np.flatnonzero(levels == level)
        members, windows = [], []
        for window in chosen:
            units = sheet.members(centres[window], side, int(window), seed)
            if units is not None:
                members.append(units)
                windows.append(window)
        if members:
            proposals = np.stack(
                [
                    _proposals(len(u), proposals_per_window, int(w), seed)
                    for u, w in zip(members, windows, strict=True)
                ]
            )
            _run_batch(sheet, standardised, members, proposals, padded)
        bar.update(len(chosen))
    bar.close()
    coords = sheet.coordinates()
    neighborhoods = precompute_neighborhoods(
        coords, width, layer_positions.neighborhood_indices.shape[0], seed
    )
    return LayerPositions(
        name=layer_positions.name,
        dims=layer_positions.dims,
        coordinates=coords,
        neighborhood_indices=neighborhoods,
        neighborhood_width=width,
        scale=layer_positions.scale,
    )


class _NoBar:
    def update(self, count: int) -> None:
        return None

    def close(self) -> None:
        return None


def _progress(total: int, enabled: bool):
    if not enabled:
        return _NoBar()
    try:
        from tqdm.auto import tqdm
    except ImportError:  # topo_models does not depend on tqdm
        return _NoBar()
    return tqdm(total=total, desc="swap windows", unit="window")
