"""Sensorium metrics against independent numpy computations and known noise."""

from __future__ import annotations

import numpy as np
import pytest

from topo_eval.predictive import (
    correlation,
    correlation_to_average,
    explainable_variance,
    feve,
)
from topo_models import TopoError


def repeated_trials(rng, images=60, repeats=4, neurons=30, signal=1.0, noise=0.5):
    """Responses = a per-image signal + independent noise on every repeat."""
    truth = rng.normal(0, signal, size=(images, neurons))
    ids = np.repeat(np.arange(images), repeats)
    responses = truth[ids] + rng.normal(0, noise, size=(images * repeats, neurons))
    return truth, ids, responses


def test_correlation_matches_numpy_corrcoef_and_constant_neurons_score_zero():
    rng = np.random.default_rng(0)
    y, p = rng.normal(size=(200, 5)), rng.normal(size=(200, 5))
    p[:, 1] += 2 * y[:, 1]
    y[:, 4] = 3.0  # a constant (e.g. zeroed) target
    got = correlation(y, p)
    for n in range(4):
        assert got[n] == pytest.approx(np.corrcoef(y[:, n], p[:, n])[0, 1], abs=1e-6)
    assert got[4] == 0.0


def test_correlation_to_average_uses_the_repeat_means():
    rng = np.random.default_rng(1)
    truth, ids, responses = repeated_trials(rng)
    predictions = truth[ids] + rng.normal(0, 0.3, responses.shape)
    got = correlation_to_average(responses, predictions, ids)
    mean_y = np.stack([responses[ids == i].mean(0) for i in range(60)])
    mean_p = np.stack([predictions[ids == i].mean(0) for i in range(60)])
    expected = [np.corrcoef(mean_y[:, n], mean_p[:, n])[0, 1] for n in range(30)]
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_feve_with_known_noise():
    rng = np.random.default_rng(2)
    truth, ids, responses = repeated_trials(rng, images=400, repeats=8, signal=1.0, noise=0.5)
    fev, total, noise = explainable_variance(responses, ids)
    np.testing.assert_allclose(noise, 0.25, rtol=0.1)  # the planted noise variance
    np.testing.assert_allclose(fev, 1.0 / 1.25, atol=0.06)  # signal / (signal + noise)
    perfect = feve(responses, truth[ids], ids)  # the true signal explains all it can
    np.testing.assert_allclose(perfect, 1.0, atol=0.06)
    blurred = feve(responses, truth[ids] + rng.normal(0, 0.5, responses.shape), ids)
    np.testing.assert_allclose(blurred, 1 - 0.25 / 1.0, atol=0.08)  # 1 − extra mse / signal
    mean_only = feve(responses, np.zeros_like(responses) + responses.mean(0), ids)
    np.testing.assert_allclose(mean_only, 0.0, atol=0.08)


def test_neurons_without_explainable_variance_are_left_out():
    rng = np.random.default_rng(3)
    truth, ids, responses = repeated_trials(rng, neurons=4)
    responses[:, 0] = rng.normal(size=len(ids))  # pure noise: FEV ≈ 0
    got = feve(responses, truth[ids], ids)
    assert np.isnan(got[0]) and np.isfinite(got[1:]).all()


def test_bad_inputs_are_reported():
    with pytest.raises(TopoError, match="two repeats"):
        explainable_variance(np.zeros((3, 2)), np.array([0, 0, 1]))
    with pytest.raises(TopoError, match="one shape"):
        correlation(np.zeros((3, 2)), np.zeros((3, 3)))
    with pytest.raises(TopoError, match="NaN"):
        correlation(np.full((3, 2), np.nan), np.zeros((3, 2)))
