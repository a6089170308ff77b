"""Swap pre-optimisation: TDANN's acceptance rule, batching that changes nothing, a planted map."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from topo_models import TopoError
from topo_models.losses import spatial_correlation_loss
from topo_models.positions import LayerPositions, precompute_neighborhoods
from topo_models.positions.swap import _proposals, swap_optimize


def grid_layer(side: int, sheet_mm: float, width_mm: float, seed: int = 0) -> LayerPositions:
    rows, cols = np.meshgrid(np.arange(side), np.arange(side), indexing="ij")
    coords = np.stack([cols.ravel(), rows.ravel()], axis=1) * sheet_mm / (side - 1)
    coords = np.random.default_rng(seed).permutation(coords)  # units shuffled over the sheet
    neighborhoods = precompute_neighborhoods(coords, width_mm, 50, seed=1, min_size=5)
    return LayerPositions(
        name="layer",
        dims=(1, side, side),
        coordinates=coords,
        neighborhood_indices=neighborhoods,
        neighborhood_width=width_mm,
    )


def tdann_pair_loss(corr: np.ndarray, coords: np.ndarray, a: int, b: int) -> float:
    """(1 − pearson(r, 1/(d+1)))/2 over rows a and b, self-pairs included (TDANN's pearson_scl)."""
    r = np.concatenate([corr[a], corr[b]])
    d = np.concatenate(
        [np.linalg.norm(coords - coords[a], axis=1), np.linalg.norm(coords - coords[b], axis=1)]
    )
    return (1 - np.corrcoef(r, 1 / (d + 1))[0, 1]) / 2


@pytest.mark.parametrize("seed", range(6))
def test_a_proposal_is_kept_exactly_when_tdanns_pair_loss_falls(seed):
    rng = np.random.default_rng(seed)
    layer = grid_layer(3, 2.0, 10.0, seed)  # one window covers the 9 units
    responses = rng.normal(size=(20, 9))
    result = swap_optimize(layer, responses, n_windows=1, proposals_per_window=1, seed=seed)
    a, b = _proposals(9, 1, 0, seed)[0]
    corr = np.corrcoef(responses.T)
    before = np.asarray(layer.coordinates, dtype=np.float64)
    swapped = before.copy()
    swapped[[a, b]] = swapped[[b, a]]
    keep = tdann_pair_loss(corr, swapped, a, b) < tdann_pair_loss(corr, before, a, b)
    np.testing.assert_array_equal(result.coordinates, swapped if keep else before)


def test_batched_windows_give_the_window_by_window_result():
    rng = np.random.default_rng(0)
    layer = grid_layer(24, 10.0, 2.5)
    responses = rng.normal(size=(40, 576)) + rng.normal(size=(40, 1))
    batched = swap_optimize(layer, responses, n_windows=80, proposals_per_window=60, seed=3)
    one_by_one = swap_optimize(
        layer, responses, n_windows=80, proposals_per_window=60, seed=3, batch=False
    )
    np.testing.assert_array_equal(batched.coordinates, one_by_one.coordinates)
    assert not np.array_equal(batched.coordinates, layer.coordinates)
    other_seed = swap_optimize(layer, responses, n_windows=80, proposals_per_window=60, seed=4)
    assert not np.array_equal(other_seed.coordinates, batched.coordinates)


def mean_window_loss(layer: LayerPositions, responses: np.ndarray) -> float:
    rows = precompute_neighborhoods(layer.coordinates, 3.0, 200, seed=9, min_size=5)
    x = torch.tensor(responses, dtype=torch.float32)
    coords = torch.tensor(layer.coordinates, dtype=torch.float32)
    return float(np.mean([spatial_correlation_loss(x[:, r], coords[r]).item() for r in rows]))


def test_planted_map_is_largely_restored_and_the_windowed_loss_falls():
    """Responses come from a smooth map (each unit prefers its true place); positions shuffled."""
    rng = np.random.default_rng(1)
    side, sheet = 20, 10.0
    rows, cols = np.meshgrid(np.arange(side), np.arange(side), indexing="ij")
    true = np.stack([cols.ravel(), rows.ravel()], axis=1) * sheet / (side - 1)
    stimuli = rng.uniform(0, sheet, size=(300, 2))
    responses = np.exp(-((stimuli[:, None, :] - true[None]) ** 2).sum(-1) / (2 * 1.5**2))
    responses += 0.02 * rng.normal(size=responses.shape)
    shuffled = true[rng.permutation(len(true))]
    layer = LayerPositions(  # windows as wide as the sheet, as TDANN's VTC-like layers have
        name="layer",
        dims=(1, side, side),
        coordinates=shuffled,
        neighborhood_indices=precompute_neighborhoods(shuffled, 10.0, 50, seed=0, min_size=5),
        neighborhood_width=10.0,
    )
    result = swap_optimize(layer, responses, n_windows=150, proposals_per_window=500, seed=0)

    def map_correlation(coords: np.ndarray) -> float:
        i, j = np.triu_indices(len(true), 1)
        assigned = np.linalg.norm(coords[i] - coords[j], axis=1)
        return np.corrcoef(assigned, np.linalg.norm(true[i] - true[j], axis=1))[0, 1]

    before, after = map_correlation(shuffled), map_correlation(result.coordinates)
    assert abs(before) < 0.1
    assert after > 0.5, f"recovered-vs-true distance correlation {after:.2f}"  # 0.6-0.7 seen
    assert mean_window_loss(result, responses) < mean_window_loss(layer, responses) - 0.1
    assert sorted(map(tuple, result.coordinates)) == sorted(map(tuple, layer.coordinates))


def test_windows_over_500_units_are_capped_not_a_crash():
    rng = np.random.default_rng(0)
    layer = grid_layer(30, 10.0, 10.0)  # every window holds all 900 units
    result = swap_optimize(
        layer, rng.normal(size=(10, 900)), n_windows=2, proposals_per_window=20, seed=0
    )
    assert sorted(map(tuple, result.coordinates)) == sorted(map(tuple, layer.coordinates))
    assert result.neighborhood_indices.shape[0] == layer.neighborhood_indices.shape[0]


def test_responses_of_the_wrong_shape_are_refused():
    layer = grid_layer(4, 1.0, 1.0)
    with pytest.raises(TopoError, match="responses"):
        swap_optimize(layer, np.zeros((10, 15)), n_windows=1)
