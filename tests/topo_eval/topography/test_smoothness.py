"""Difference against distance curves and TDANN's smoothness score."""

from __future__ import annotations

import numpy as np
import pytest

from topo_eval.topography.smoothness import (
    difference_over_distance,
    distance_curves,
    max_distance,
    smoothness,
    top_quartile_mask,
)
from topo_models import TopoError


def test_smoothness_formula_truncates_at_the_first_nan():
    assert smoothness([1.0, 3.0, 4.0]) == pytest.approx(0.75)
    assert smoothness([1.0, 2.0, np.nan, 10.0]) == pytest.approx(0.5)
    assert smoothness([2.0, 2.0, 2.0]) == 0.0
    assert np.isnan(smoothness([np.nan, 1.0])) and np.isnan(smoothness([0.0, 0.0]))


def test_max_distance_is_half_the_diagonal_of_four_thirds_hypercolumns():
    assert max_distance(3.5) == pytest.approx(np.sqrt(2 * (4 / 3 * 3.5) ** 2) / 2)
    with pytest.raises(TopoError):
        max_distance(0.0)


def test_a_smooth_map_is_smoother_than_the_same_map_with_shuffled_positions():
    rng = np.random.default_rng(0)
    coords = rng.uniform(0, 10, (3000, 2))
    orientation = np.mod(18.0 * coords[:, 0] + 7.0 * coords[:, 1], 180.0)  # smooth, wraps
    shuffled = rng.permutation(coords)
    kwargs = dict(period=180.0, n_samples=4, sample_size=500)
    smooth = difference_over_distance(coords, orientation, max_distance(3.5), **kwargs)
    scrambled = difference_over_distance(shuffled, orientation, max_distance(3.5), **kwargs)
    assert smooth.curves.shape == smooth.chance.shape == (4, 9)
    assert len(smooth.bin_edges) == 10 and smooth.bin_edges[-1] == pytest.approx(max_distance(3.5))
    smooth_scores = [smoothness(c) for c in smooth.curves]
    scrambled_scores = [smoothness(c) for c in scrambled.curves]
    assert min(smooth_scores) > 0.5 > 0.2 > max(scrambled_scores)
    assert max(smoothness(c) for c in smooth.chance) < 0.2
    assert np.nanmax(smooth.curves) <= 90.0  # wrapped differences


def test_pairs_are_binned_by_distance_and_dropped_beyond_the_cutoff():
    coords = np.array([[0.0, 0.0], [0.5, 0.0], [2.5, 0.0], [9.0, 0.0]])
    values = np.array([0.0, 1.0, 5.0, 100.0])
    curves = difference_over_distance(coords, values, 3.0, n_samples=1, n_bins=3)
    # pairs: d 0.5 -> 1, d 2.5 -> 5, d 2.0 -> 4; 9, 8.5, 6.5 mm pairs dropped
    np.testing.assert_allclose(curves.curves[0], [1.0, np.nan, 4.5])
    wrapped = difference_over_distance(
        coords[:2], np.array([5.0, 175.0]), 1.0, period=180.0, n_samples=1, n_bins=1
    )
    assert wrapped.curves[0, 0] == pytest.approx(10.0)


def test_units_without_a_value_are_left_out_before_sampling():
    coords = np.array([[0.0, 0.0], [0.5, 0.0], [1.0, 0.0]])
    curves = difference_over_distance(
        coords, np.array([0.0, np.nan, 3.0]), 2.0, n_samples=1, sample_size=2, n_bins=2
    )
    np.testing.assert_allclose(curves.curves[0], [np.nan, 3.0])  # the one pair left, 1 mm


def test_distance_curves_skip_nan_pairs():
    coords = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    stats = np.array([[0, 2.0, np.nan], [2.0, 0, 4.0], [np.nan, 4.0, 0]])
    curves = distance_curves(
        coords, lambda index: stats[np.ix_(index, index)], 2.0, n_samples=1, n_bins=1
    )
    assert curves.curves[0, 0] == pytest.approx(3.0)


def test_top_quartile_mask_keeps_units_above_the_75th_percentile():
    ptp = np.arange(100.0)
    ptp[0] = np.nan
    mask = top_quartile_mask(ptp)
    assert mask.sum() == 25 and mask[-1] and not mask[0] and not mask[74]
