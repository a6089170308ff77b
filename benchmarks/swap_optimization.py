"""Benchmark: swap optimisation on a 100×100-unit layer with 640 responses (issue: TDANN positions).

Baseline: a straightforward per-proposal loop in NumPy, as spacetorch runs it — per window, the
units inside it and their correlation matrix; per proposal, TDANN's pair loss
(1 − pearson(r, 1/(d+1)))/2 over the two units' rows before and after the swap, undone unless it
fell. Same windows, caps and proposals (the same seeded draws), so the final arrangements must
be identical. Prints ``name: value unit (ratio X.XX vs <baseline>)``.
Run: ``python benchmarks/swap_optimization.py`` (about a minute on 2 cores).
"""

from __future__ import annotations

import time

import numpy as np
import torch

from topo_models.positions import LayerPositions, precompute_neighborhoods, swap_optimize
from topo_models.positions.swap import (
    MAX_WINDOW_UNITS,
    MIN_WINDOW_UNITS,
    _proposals,
    _window_centres,
)

SIDE, IMAGES, SHEET_MM, WIDTH_MM = 100, 640, 24.5, 1.5  # V1-sized sheet, ~35 units a window
N_WINDOWS, PROPOSALS, SEED = 600, 500, 0


def pair_loss(corr: np.ndarray, coords: np.ndarray, a: int, b: int) -> float:
    r = np.concatenate([corr[a], corr[b]])
    d = np.concatenate(
        [np.linalg.norm(coords - coords[a], axis=1), np.linalg.norm(coords - coords[b], axis=1)]
    )
    s = 1 / (d + 1)
    r, s = r - r.mean(), s - s.mean()
    return (1 - (r @ s) / np.sqrt((r @ r) * (s @ s))) / 2


def baseline(layer: LayerPositions, responses: np.ndarray) -> np.ndarray:
    coords = np.array(layer.coordinates, dtype=np.float64)
    low, high = coords.min(axis=0), coords.max(axis=0)
    side = np.minimum(WIDTH_MM, high - low)
    for index, centre in enumerate(_window_centres(coords, WIDTH_MM, N_WINDOWS, SEED)):
        inside = np.flatnonzero(np.all(np.abs(coords - centre) <= side / 2, axis=1))
        if len(inside) < MIN_WINDOW_UNITS:
            continue
        if len(inside) > MAX_WINDOW_UNITS:
            rng = np.random.default_rng([SEED, index, 1])
            inside = np.sort(rng.choice(inside, MAX_WINDOW_UNITS, replace=False))
        corr = np.nan_to_num(np.corrcoef(responses[:, inside].T))
        local = coords[inside]
        for a, b in _proposals(len(inside), PROPOSALS, index, SEED):
            before = pair_loss(corr, local, a, b)
            local[[a, b]] = local[[b, a]]
            if pair_loss(corr, local, a, b) >= before:
                local[[a, b]] = local[[b, a]]
        coords[inside] = local
    return coords


def main() -> None:
    torch.set_num_threads(2)
    rng = np.random.default_rng(0)
    rows, cols = np.meshgrid(np.arange(SIDE), np.arange(SIDE), indexing="ij")
    coords = np.stack([cols.ravel(), rows.ravel()], axis=1) * SHEET_MM / (SIDE - 1)
    coords = coords + rng.uniform(-0.05, 0.05, coords.shape)
    layer = LayerPositions(
        name="layer2.0",
        dims=(1, SIDE, SIDE),
        coordinates=coords,
        neighborhood_indices=precompute_neighborhoods(coords, WIDTH_MM, 2000, seed=0),
        neighborhood_width=WIDTH_MM,
    )
    latent = rng.normal(size=(IMAGES, 8))
    responses = latent @ rng.normal(size=(8, SIDE * SIDE)) + rng.normal(size=(IMAGES, SIDE**2))

    start = time.perf_counter()
    expected = baseline(layer, responses)
    t_loop = time.perf_counter() - start
    start = time.perf_counter()
    result = swap_optimize(layer, responses, N_WINDOWS, PROPOSALS, seed=SEED)
    t_fast = time.perf_counter() - start
    same = np.array_equal(result.coordinates, expected.astype(np.float32))
    proposals = N_WINDOWS * PROPOSALS
    print(
        f"per-proposal loop, {SIDE}x{SIDE} units, {IMAGES} responses, {N_WINDOWS} windows x "
        f"{PROPOSALS}: {t_loop:.1f} s (ratio 1.00 vs itself; {t_loop / proposals * 1e6:.0f} "
        "us per proposal)"
    )
    print(
        f"swap_optimize (batched windows, one dot product per proposal): {t_fast:.2f} s "
        f"(ratio {t_loop / t_fast:.1f} vs the per-proposal loop; identical arrangement: {same})"
    )


if __name__ == "__main__":
    main()
