"""Sliding-window and Gaussian maps on a grid."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import circmean, circstd

from topo_eval.topography.maps import gaussian_map, smoothed_map
from topo_models import TopoError


def test_circular_mean_wraps_around_the_period():
    coords = np.array([[0.0, 0.0], [1.0, 1.0]])
    smoothed = smoothed_map(coords, np.array([175.0, 5.0]), 5.0, 1.0, period=180.0)
    assert smoothed.values.shape == (1, 1)
    value = smoothed.values[0, 0]
    assert 0 <= value < 180 and min(value, 180 - value) < 1e-6  # 0 deg, not 90
    linear = smoothed_map(coords, np.array([175.0, 5.0]), 5.0, 1.0)
    assert linear.values[0, 0] == pytest.approx(90.0) and np.isnan(linear.spread).all()


def test_windows_hold_exactly_the_units_inside_them():
    rng = np.random.default_rng(0)
    coords = rng.uniform(0, 10, (400, 2))
    values = rng.uniform(0, 180, 400)
    width, stride = 1.7, 0.6  # not a multiple: windows overlap unevenly
    circular = smoothed_map(coords, values, width, stride, period=180.0)
    linear = smoothed_map(coords, values, width, stride)
    assert circular.values.shape == (len(circular.y_centres), len(circular.x_centres))
    for i, j in [(0, 0), (3, 7), (len(circular.y_centres) - 1, 5)]:
        x0, y0 = circular.x_centres[j] - width / 2, circular.y_centres[i] - width / 2
        inside = (coords[:, 0] >= x0) & (coords[:, 0] <= x0 + width)
        inside &= (coords[:, 1] >= y0) & (coords[:, 1] <= y0 + width)
        assert circular.counts[i, j] == inside.sum() > 0
        assert circular.values[i, j] == pytest.approx(circmean(values[inside], high=180))
        spread = circstd(values[inside], high=180) / inside.sum()
        assert circular.spread[i, j] == pytest.approx(spread)
        assert linear.values[i, j] == pytest.approx(values[inside].mean())


def test_empty_windows_are_nan_with_zero_count():
    coords = np.array([[0.0, 0.0], [10.0, 10.0]])
    smoothed = smoothed_map(coords, np.array([10.0, 20.0]), 1.0, 1.0, period=180.0)
    assert smoothed.counts[5, 5] == 0 and np.isnan(smoothed.values[5, 5])
    assert smoothed.values[0, 0] == pytest.approx(10.0)


def test_gaussian_map_is_the_weighted_mean():
    rng = np.random.default_rng(1)
    coords = rng.uniform(0, 20, (300, 2))
    values = rng.normal(size=300)
    smoothed = gaussian_map(coords, values, 2.0, grid_size=12)
    i, j = 4, 9
    anchor = np.array([smoothed.x_centres[j], smoothed.y_centres[i]])
    weights = np.exp(-((coords - anchor) ** 2).sum(1) / (2 * 2.0**2))
    assert smoothed.values[i, j] == pytest.approx((weights * values).sum() / weights.sum())


def test_units_without_a_value_are_left_out():
    coords = np.array([[0.0, 0.0], [1.0, 1.0], [3.0, 3.0]])
    smoothed = smoothed_map(coords, np.array([10.0, np.nan, 30.0]), 4.0, 1.0, period=180.0)
    assert smoothed.values.shape == (1, 1)  # the grid still spans every unit
    assert smoothed.counts[0, 0] == 2 and smoothed.values[0, 0] == pytest.approx(20.0)
    gaussian = gaussian_map(coords, np.array([1.0, np.nan, 1.0]), 1.0, grid_size=3)
    np.testing.assert_allclose(gaussian.values, 1.0)


def test_maps_reject_bad_input():
    with pytest.raises(TopoError, match="one value per unit") as error:
        smoothed_map(np.zeros((2, 2)), np.zeros(3), 1.0, 1.0)
    assert error.value.field == "values"
    with pytest.raises(TopoError, match="NaN"):
        smoothed_map(np.array([[0.0, np.nan], [1.0, 1.0]]), np.zeros(2), 1.0, 1.0)
    with pytest.raises(TopoError, match=r"\(units, 2\)"):
        smoothed_map(np.zeros((2, 3)), np.zeros(2), 1.0, 1.0)
    with pytest.raises(TopoError, match="positive"):
        smoothed_map(np.zeros((2, 2)), np.zeros(2), 0.0, 1.0)
