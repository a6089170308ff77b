"""precompute_neighborhoods: TDANN's square windows and 5th-percentile trimming."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

import topo_models.positions.neighborhoods as neighborhoods
from topo_models.errors import TopoError
from topo_models.positions import precompute_neighborhoods


def grid(n_side: int, spacing: float) -> np.ndarray:
    """Units on an n_side x n_side grid: (x, y) = spacing * (column, row)."""
    ys, xs = np.meshgrid(np.arange(n_side), np.arange(n_side), indexing="ij")
    return np.stack([xs.ravel(), ys.ravel()], axis=1) * spacing


def window_members(coords: np.ndarray, centre: np.ndarray, half: float) -> np.ndarray:
    """Brute-force membership of one square window (closed interval on both axes)."""
    inside_x = (coords[:, 0] >= centre[0] - half) & (coords[:, 0] <= centre[0] + half)
    inside_y = (coords[:, 1] >= centre[1] - half) & (coords[:, 1] <= centre[1] + half)
    return np.flatnonzero(inside_x & inside_y)


def check_against_brute_force(coords, width, n, seed, min_size=25, max_size=500):
    """Recompute every window by hand and compare sizes, trimming and rows."""
    indices, centres, kept = precompute_neighborhoods(
        coords, width, n, seed, min_size, max_size, return_windows=True
    )
    half = width / 2
    assert np.all(centres - half >= coords.min(axis=0))  # windows inside the sheet
    assert np.all(centres + half <= coords.max(axis=0))
    members = [window_members(coords, c, half) for c in centres]
    sizes = np.array([len(m) for m in members])
    final = int(min(max(np.percentile(sizes, 5), min_size), max_size))
    assert indices.shape == (kept.sum(), final)
    np.testing.assert_array_equal(kept, sizes >= final)
    for row, window in zip(indices, np.flatnonzero(kept), strict=True):
        assert len(np.unique(row)) == final
        assert np.isin(row, members[window]).all()
    return indices, sizes, final


def test_regular_grid_trims_to_the_hand_computed_fifth_percentile():
    # Spacing 0.1, width 0.75: a window holds 7 or 8 grid columns and 7 or 8 rows, so sizes are
    # 49 (p = 1/4), 56 (1/2) or 64 (1/4); 5th percentile = 49 > 25, no window is dropped.
    coords = grid(60, 0.1)
    indices, sizes, final = check_against_brute_force(coords, 0.75, 400, seed=0)
    assert set(sizes) == {49, 56, 64}
    assert final == 49 and indices.shape == (400, 49)


def test_windows_below_min_size_are_dropped():
    # Width 0.45: 4 or 5 columns and rows, sizes 16, 20 or 25; the 5th percentile (16) is below
    # min_size, so Q = 25 and only windows of exactly 25 units (about a quarter) survive.
    coords = grid(60, 0.1)
    indices, sizes, final = check_against_brute_force(coords, 0.45, 400, seed=1)
    assert final == 25 and set(sizes) == {16, 20, 25}
    assert 0 < len(indices) == (sizes == 25).sum() < 400


@pytest.mark.parametrize("chunk_elements", [None, 700])
def test_random_layout_matches_brute_force_trimming(monkeypatch, chunk_elements):
    if chunk_elements is not None:  # many small chunks must give the same rule
        monkeypatch.setattr(neighborhoods, "_MAX_CHUNK_ELEMENTS", chunk_elements)
    coords = np.random.default_rng(3).uniform(0, 10, (4000, 2))
    _, sizes, final = check_against_brute_force(coords, 1.4, 300, seed=4)
    assert final > 25 and (sizes < final).any()  # the percentile, not min_size, decided


def test_windows_with_more_units_are_capped_at_max_size():
    coords = grid(60, 0.1)  # width 3.05 holds 30-31 per axis: >= 900 units
    indices, sizes, final = check_against_brute_force(coords, 3.05, 50, seed=5)
    assert final == 500 and sizes.min() >= 900 and indices.shape == (50, 500)


def test_window_wider_than_the_sheet_is_clamped_and_subsamples_differ():
    coords = grid(20, 0.1)  # 400 units on a 1.9 mm sheet
    indices, centres, kept = precompute_neighborhoods(
        coords, 50.0, 30, seed=6, max_size=100, return_windows=True
    )
    assert kept.all() and indices.shape == (30, 100)
    np.testing.assert_allclose(centres, 0.95)  # every window spans the whole sheet
    assert len({tuple(row) for row in indices}) == 30  # random subsets, not one fixed set
    assert len(np.unique(indices)) > 350


def test_layer_smaller_than_min_size_uses_all_its_units():
    coords = np.random.default_rng(0).uniform(0, 1, (10, 2))
    indices = precompute_neighborhoods(coords, 5.0, 20, seed=0)
    assert indices.shape == (20, 10)
    assert all(set(row) == set(range(10)) for row in indices)


def test_same_seed_same_array_different_seed_differs():
    coords = np.random.default_rng(7).uniform(0, 10, (3000, 2))
    first = precompute_neighborhoods(coords, 2.0, 200, seed=11)
    np.testing.assert_array_equal(first, precompute_neighborhoods(coords, 2.0, 200, seed=11))
    other = precompute_neighborhoods(coords, 2.0, 200, seed=12)
    assert first.shape != other.shape or not np.array_equal(first, other)


def test_width_too_small_for_the_density_is_a_topo_error():
    with pytest.raises(TopoError, match="too small") as info:
        precompute_neighborhoods(grid(60, 0.1), 0.35, 100, seed=0)
    assert "0.35" in str(info.value) and "3600 units" in str(info.value)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"coordinates": np.zeros((1, 2))},
        {"coordinates": np.zeros((10, 3))},
        {"coordinates": np.full((10, 2), np.nan)},
        {"width_mm": 0.0},
        {"n_neighborhoods": 0},
        {"seed": -1},
    ],
)
def test_bad_arguments_are_topo_errors(kwargs):
    args = {"coordinates": grid(10, 0.1), "width_mm": 1.0, "n_neighborhoods": 5, "seed": 0}
    precompute_neighborhoods(**args)  # the defaults are valid
    with pytest.raises(TopoError):
        precompute_neighborhoods(**{**args, **kwargs})


def test_tdann_layer1_size_runs_fast_in_bounded_memory():
    # 200,704 units (layer1 at 224 px) x 20,000 windows, TDANN's retina width fraction.
    coords = np.random.default_rng(0).uniform(0, 4.0, (200_704, 2)).astype(np.float32)
    tracemalloc.start()
    try:
        indices = precompute_neighborhoods(coords, 0.0792, 20_000, seed=0)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert 18_000 < len(indices) <= 20_000 and 25 <= indices.shape[1] < 100
    assert peak < 300 * 2**20
