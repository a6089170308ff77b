"""Winding numbers and pinwheel counts on planted orientation maps."""

from __future__ import annotations

import numpy as np
import pytest

from topo_eval.topography.pinwheels import (
    MACAQUE_PINWHEEL_DENSITY,
    count_pinwheels,
    find_pinwheels,
    pinwheel_density,
    winding_numbers,
)
from topo_models import TopoError


def planted_map(shape, singularities, spacing=1.0):
    """Orientation (deg) ``sum 0.5 sign atan2(y - y0, x - x0)`` with x = j, y = i."""
    i, j = np.mgrid[0 : shape[0], 0 : shape[1]].astype(float) * spacing
    theta = sum(
        0.5 * sign * np.degrees(np.arctan2(i - y0, j - x0)) for x0, y0, sign in singularities
    )
    return np.mod(theta, 180.0)


def test_counterclockwise_increasing_orientation_winds_plus_one_half():
    winding = winding_numbers(planted_map((9, 9), [(4.3, 4.4, 1)]))
    assert winding.shape == (7, 7)
    # the loops of pixels (i, j) in {4, 5}^2 (interior [3:5, 3:5]) encircle it, no other
    np.testing.assert_allclose(winding[3:5, 3:5], 0.5, atol=1e-12)
    winding[3:5, 3:5] = 0.0
    np.testing.assert_allclose(winding, 0.0, atol=1e-12)
    negative = winding_numbers(planted_map((9, 9), [(4.3, 4.4, -1)]))
    np.testing.assert_allclose(negative[3:5, 3:5], -0.5, atol=1e-12)


def test_the_loop_is_closed():
    # a pinwheel centred between pixels: every loop around it sums to exactly +-0.5 with 8
    # increments (TDANN's 7-increment loop misses the W -> NW step and would not)
    winding = winding_numbers(planted_map((10, 10), [(4.5, 4.5, 1)]))
    np.testing.assert_allclose(winding[3:5, 3:5], 0.5, atol=1e-12)
    assert np.abs(winding).sum() == pytest.approx(2.0)


def test_planted_pinwheels_are_counted_once_with_their_signs():
    singularities = [
        (10.3, 10.6, 1),
        (30.5, 12.2, -1),
        (50.7, 10.4, 1),
        (12.6, 35.5, -1),
        (33.2, 33.7, -1),
        (52.5, 36.1, 1),
        (70.4, 20.8, 1),
    ]
    grid = planted_map((48, 84), singularities)
    assert count_pinwheels(grid) == (4, 3)
    mask = np.ones(grid.shape, dtype=bool)
    mask[:, 42:] = False  # keeps the pinwheels at x < 42: one positive, three negative
    assert count_pinwheels(grid, mask=mask) == (1, 3)
    assert count_pinwheels(grid, mask=mask[1:-1, 1:-1]) == (1, 3)


def test_a_smooth_map_has_no_pinwheels_and_nan_blocks_candidates():
    i, j = np.mgrid[0:20, 0:20]
    assert count_pinwheels(np.mod(7.0 * j + 3.0 * i, 180.0)) == (0, 0)
    grid = planted_map((12, 12), [(5.5, 5.5, 1)])
    grid[5:7, 5:7] = np.nan  # every loop around the pinwheel passes through a NaN
    assert count_pinwheels(grid) == (0, 0)


def test_density_per_hypercolumn_area():
    assert pinwheel_density(49, 35.0, 3.5) == pytest.approx(0.49)
    assert MACAQUE_PINWHEEL_DENSITY == pytest.approx(np.pi)


def test_find_pinwheels_on_scattered_units():
    rng = np.random.default_rng(0)
    coords = rng.uniform(0, 12, (6000, 2))
    singularities = [(3.1, 3.2, 1), (8.9, 8.7, -1)]
    orientation = np.mod(
        sum(
            0.5 * s * np.degrees(np.arctan2(coords[:, 1] - y, coords[:, 0] - x))
            for x, y, s in singularities
        ),
        180.0,
    )
    found = find_pinwheels(
        coords, orientation, hypercolumn_mm=3.0, width_mm=0.6, stride_mm=0.3, max_spread=10.0
    )
    assert (found.n_positive, found.n_negative) == (1, 1)
    assert found.density == pytest.approx(2 / (np.ptp(coords[:, 0]) / 3.0) ** 2)


def test_grids_must_be_2d():
    with pytest.raises(TopoError, match="3 x 3"):
        winding_numbers(np.zeros((2, 5)))
    with pytest.raises(TopoError, match="mask"):
        count_pinwheels(np.zeros((5, 5)), mask=np.ones((4, 4), dtype=bool))
