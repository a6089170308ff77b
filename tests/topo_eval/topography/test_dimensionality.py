"""PCA spectrum, effective dimensionality and power-law exponent."""

from __future__ import annotations

import numpy as np
import pytest

from topo_eval.topography.dimensionality import (
    effective_dimensionality,
    pca_eigenvalues,
    power_law_exponent,
)
from topo_models import TopoError


@pytest.mark.parametrize("k", [1, 3, 17])
def test_k_equal_eigenvalues_have_dimensionality_k(k):
    assert effective_dimensionality(np.r_[np.full(k, 2.5), np.zeros(5)]) == pytest.approx(k)


def test_effective_dimensionality_formula():
    spectrum = np.array([4.0, 2.0, 1.0])
    assert effective_dimensionality(spectrum) == pytest.approx(49 / 21)


@pytest.mark.parametrize("alpha", [0.7, 1.0, 1.8])
def test_power_law_exponent_recovers_alpha(alpha):
    spectrum = np.arange(1, 201, dtype=float) ** -alpha
    assert power_law_exponent(spectrum) == pytest.approx(alpha, abs=1e-9)
    assert power_law_exponent(spectrum, first=10, last=100) == pytest.approx(alpha, abs=1e-9)


def test_pca_eigenvalues_match_the_covariance_either_way_round():
    rng = np.random.default_rng(0)
    for shape in [(40, 12), (12, 40)]:
        responses = rng.normal(size=shape) * rng.uniform(0.1, 3, shape[1])
        expected = np.sort(np.linalg.eigvalsh(np.cov(responses, rowvar=False)))[::-1]
        found = pca_eigenvalues(responses)
        assert len(found) == min(shape[0] - 1, shape[1])
        np.testing.assert_allclose(found, expected[: len(found)], rtol=1e-8, atol=1e-10)


def test_bad_spectra_and_responses_raise():
    with pytest.raises(TopoError):
        effective_dimensionality([1.0, -1.0])
    with pytest.raises(TopoError):
        effective_dimensionality(np.zeros(3))
    with pytest.raises(TopoError, match="PC range"):
        power_law_exponent(np.ones(10), last=50)
    with pytest.raises(TopoError, match="NaN"):
        pca_eigenvalues(np.array([[1.0, np.nan], [2.0, 3.0]]))
