"""Response correlation against distance."""

from __future__ import annotations

import numpy as np
import pytest

from topo_eval.topography.correlation import correlation_vs_distance
from topo_models import TopoError


def test_units_driven_by_a_smooth_field_correlate_more_when_close():
    rng = np.random.default_rng(0)
    coords = rng.uniform(0, 10, (600, 2))
    frequencies = rng.normal(0, 0.6, (80, 2))  # one smooth random pattern per image
    phases = rng.uniform(0, 2 * np.pi, (80, 1))
    responses = np.cos(frequencies @ coords.T + phases) + 0.3 * rng.normal(size=(80, 600))
    curves = correlation_vs_distance(responses, coords, 6.0, n_samples=3, sample_size=300)
    mean = curves.curves.mean(axis=0)
    assert mean[0] > 0.5 and mean[0] > mean[-1] + 0.2
    assert np.abs(curves.chance.mean(axis=0) - curves.chance.mean()).max() < 0.1


def test_constant_units_are_skipped_and_bad_shapes_raise():
    coords = np.array([[0.0, 0.0], [0.1, 0.0], [0.2, 0.0]])
    responses = np.array([[1.0, 2.0, 5.0], [2.0, 4.0, 5.0], [3.0, 5.0, 5.0]])
    curves = correlation_vs_distance(responses, coords, 1.0, n_samples=1, n_bins=1)
    assert curves.curves[0, 0] == pytest.approx(np.corrcoef(responses[:, 0], responses[:, 1])[0, 1])
    with pytest.raises(TopoError, match="one row per unit"):
        correlation_vs_distance(responses, coords[:2], 1.0)
