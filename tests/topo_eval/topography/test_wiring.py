"""Wiring length on a hand-made layout."""

from __future__ import annotations

import numpy as np
import pytest

from topo_eval.topography.wiring import active_mask, fibre_centres, wiring_length
from topo_models import TopoError


def sheet(active_points):
    """A 10 x 10 mm sheet (corners) plus the given points; the points are the active units."""
    corners = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])
    coords = np.vstack([corners, active_points])
    active = np.r_[np.zeros(4, dtype=bool), np.ones(len(active_points), dtype=bool)]
    return coords, active


SOURCE = sheet(np.repeat([[1.0, 1.0], [1.0, 9.0]], 3, axis=0))
TARGET = sheet(np.repeat([[9.0, 1.0], [9.0, 9.0]], 3, axis=0))


@pytest.mark.parametrize(
    ("direction", "expected"),
    [
        ("right", 36.0),  # target at x + 10: (19, 1), (19, 9) -> 18 + 18
        ("left", 4.0),  # target at x - 10: (-1, 1), (-1, 9) -> 2 + 2
        ("up", 2 * np.hypot(8, 10)),  # (9, 11), (9, 19): straight pairs beat crossed ones
    ],
)
def test_wiring_length_of_a_hand_made_layout(direction, expected):
    found = wiring_length(*SOURCE, *TARGET, fibre_radius_mm=1.0, direction=direction)
    assert found == pytest.approx(expected)


def test_wiring_length_averages_the_four_directions():
    down = 2 * np.hypot(8, 10)  # (9, -9), (9, -1): symmetric to "up"
    expected = (36.0 + 4.0 + 2 * np.hypot(8, 10) + down) / 4
    assert wiring_length(*SOURCE, *TARGET, fibre_radius_mm=1.0) == pytest.approx(expected)


def test_fibres_are_the_fewest_clusters_within_the_radius():
    points = np.repeat([[0.0, 0.0], [5.0, 0.0], [0.0, 5.0]], 4, axis=0)
    assert len(fibre_centres(points, 1.0)) == 3
    assert len(fibre_centres(points, 10.0)) == 1  # rms distance to the mean 3.3 mm < 10


def test_no_active_unit_means_no_wire_and_bad_masks_raise():
    coords, active = SOURCE
    assert (
        wiring_length(coords, np.zeros(len(coords), dtype=bool), *TARGET, fibre_radius_mm=1.0)
        == 0.0
    )
    with pytest.raises(TopoError, match="boolean"):
        wiring_length(coords, active.astype(int), *TARGET, fibre_radius_mm=1.0)
    with pytest.raises(TopoError, match="direction"):
        wiring_length(*SOURCE, *TARGET, fibre_radius_mm=1.0, direction="north")


def test_active_mask_takes_each_pattern_above_its_percentile():
    responses = np.tile(np.arange(100.0), (2, 1))
    responses[1] *= -1
    mask = active_mask(responses, 95.0)
    assert mask.sum(axis=1).tolist() == [5, 5] and mask[0, 99] and mask[1, 0]
