"""Tuning: circular variance, TDANN's von Mises preferred orientation, V1 statistics."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import curve_fit
from scipy.special import i0

from topo_data.images import sine_gratings
from topo_eval.topography.tuning import (
    MACAQUE_MEDIAN_PEAK,
    circular_variance,
    preferred_orientation,
    scale_to_macaque,
    tuning_curves,
    v1_tuning,
)
from topo_models import TopoError

ANGLES = np.arange(8) * 22.5


def von_mises_curves(peaks_deg, kappa, angles=ANGLES, baseline=0.0):
    """Orientation tuning ``baseline + exp(kappa (cos 2(theta - peak) - 1))``, (units, angles)."""
    delta = np.deg2rad(angles[None] - np.asarray(peaks_deg, dtype=float)[:, None])
    return baseline + np.exp(np.asarray(kappa)[..., None] * (np.cos(2 * delta) - 1))


def curve_fit_reference(curve, angles=ANGLES):
    """TDANN's definition, one curve_fit per unit: the baseline the vectorised fit must match."""

    def von_mises(x, a, kappa, x0):
        return a * np.exp(kappa * np.cos(x - x0)) / (2 * np.pi * i0(kappa))

    points = np.interp(np.linspace(0, 180, 50), np.append(angles, 180), np.append(curve, curve[0]))
    x = np.linspace(-np.pi, np.pi, 50)
    params, _ = curve_fit(von_mises, x, points, maxfev=10000)
    fine = np.linspace(-np.pi, np.pi, 36001)
    return np.rad2deg((fine[np.argmax(von_mises(fine, *params))] + np.pi) / 2) % 180


def angular_error(a, b):
    return np.abs(np.mod(np.asarray(a) - b + 90, 180) - 90)


def test_circular_variance_matches_the_formula():
    rng = np.random.default_rng(0)
    curves = rng.uniform(0, 5, (20, 8))
    theta = np.deg2rad(ANGLES)
    expected = 1 - np.abs((curves * np.exp(2j * theta)).sum(1)) / curves.sum(1)
    np.testing.assert_allclose(circular_variance(curves, ANGLES), expected, rtol=1e-12)


def test_circular_variance_is_0_for_one_orientation_and_1_for_flat_curves():
    curves = np.array([np.eye(8)[3], np.ones(8), np.zeros(8)])
    cv = circular_variance(curves, ANGLES)
    np.testing.assert_allclose(cv[:2], [0.0, 1.0], atol=1e-12)
    assert np.isnan(cv[2])


@pytest.mark.parametrize("peak", [11.25, 100.0, 172.0, 0.0, 67.5])
def test_preferred_orientation_between_samples_matches_truth_and_curve_fit(peak):
    curves = von_mises_curves([peak] * 3, np.array([0.7, 1.0, 2.0]), baseline=0.2)
    found = preferred_orientation(curves, ANGLES)
    assert ((found >= 0) & (found < 180)).all()
    assert angular_error(found, peak).max() < 0.5
    reference = np.array([curve_fit_reference(c) for c in curves])
    assert angular_error(found, reference).max() < 0.05


def test_preferred_orientation_agrees_with_curve_fit_on_noisy_curves():
    rng = np.random.default_rng(1)
    peaks = rng.uniform(0, 180, 40)
    curves = von_mises_curves(peaks, rng.uniform(0.5, 4, 40), baseline=0.3)
    curves = np.clip(curves + rng.normal(0, 0.1, curves.shape), 0, None)
    found = preferred_orientation(curves, ANGLES)
    reference = np.array([curve_fit_reference(c) for c in curves])
    assert angular_error(found, reference).max() < 0.5


def test_preferred_orientation_does_not_depend_on_column_order_or_scale():
    curves = von_mises_curves([30.0, 150.0], np.array([1.0, 1.5]))
    order = np.random.default_rng(2).permutation(8)
    np.testing.assert_allclose(
        preferred_orientation(7 * curves[:, order], ANGLES[order]),
        preferred_orientation(curves, ANGLES),
        atol=1e-6,
    )


def test_preferred_orientation_is_nan_for_empty_curves():
    curves = np.vstack([np.zeros(8), von_mises_curves([45.0], np.array([1.0]))])
    found = preferred_orientation(curves, ANGLES)
    assert np.isnan(found[0]) and abs(found[1] - 45) < 0.5


def test_tuning_inputs_are_checked():
    with pytest.raises(TopoError, match="non-negative"):
        circular_variance(-np.ones((2, 8)), ANGLES)
    with pytest.raises(TopoError, match="one angle per column"):
        preferred_orientation(np.ones((2, 8)), ANGLES[:7])
    with pytest.raises(TopoError, match="distinct"):
        preferred_orientation(np.ones((2, 3)), [0.0, 180.0, 90.0])
    with pytest.raises(TopoError, match="NaN") as error:
        scale_to_macaque(np.array([[1.0, np.nan], [0.0, 2.0]]))
    assert error.value.field == "responses"


def test_scale_to_macaque_sets_the_median_peak_and_a_zero_floor():
    rng = np.random.default_rng(3)
    responses = rng.normal(size=(50, 101)).astype(np.float32)
    scaled = scale_to_macaque(responses)
    assert scaled.dtype == np.float32 and scaled.min() == 0
    assert np.median(scaled.max(0)) == pytest.approx(MACAQUE_MEDIAN_PEAK, rel=1e-5)


def test_tuning_curves_average_images_that_share_a_label():
    responses = np.arange(12, dtype=float).reshape(6, 2)
    values, curves = tuning_curves(responses, ["b", "a", "b", "a", "c", "c"])
    assert values.tolist() == ["a", "b", "c"]
    np.testing.assert_allclose(curves, [[4, 2, 9], [5, 3, 10]])


def test_v1_tuning_recovers_planted_preferences_from_grating_metadata():
    _, metadata = sine_gratings(32, frequencies_cycles_per_image=[2, 4, 6, 8])
    rng = np.random.default_rng(4)
    n = 60
    orientation = rng.uniform(0, 180, n)
    sf = rng.choice([2.0, 4.0, 6.0, 8.0], n)
    colour = rng.choice(["bw", "rc"], n)
    theta = metadata.orientation_deg.to_numpy()[:, None]
    image_sf = metadata.sf_cycles_per_image.to_numpy()[:, None]
    image_colour = metadata.color.to_numpy()[:, None]
    responses = (
        np.exp(2.0 * (np.cos(np.deg2rad(2 * (theta - orientation))) - 1))
        * np.exp(-((image_sf - sf) ** 2) / 4)
        * np.where(image_colour == colour, 1.0, 0.6)
    ) + rng.normal(0, 0.01, (len(metadata), n))
    responses[:, :10] = 0.5 + rng.normal(0, 0.01, (len(metadata), 10))  # untuned units
    tuning = v1_tuning(responses.astype(np.float32), metadata)
    assert angular_error(tuning.orientation_deg[10:], orientation[10:]).max() < 1.0
    np.testing.assert_array_equal(tuning.sf[10:], sf[10:])
    np.testing.assert_array_equal(tuning.colour[10:], colour[10:])
    assert (tuning.cv[10:] < tuning.cv[:10].min()).all()
    assert tuning.orientation_curves.shape == (n, 8)
    np.testing.assert_allclose(tuning.orientations, np.arange(8) * 22.5)
    expected = tuning.selective.sum() / tuning.responsive.sum()
    assert tuning.fraction_selective == pytest.approx(expected)
    assert tuning.selective[10:].all() and not tuning.selective[:10].any()


def test_v1_tuning_rejects_metadata_that_does_not_fit():
    _, metadata = sine_gratings(16, frequencies_cycles_per_image=[2, 4], phases=1)
    with pytest.raises(TopoError, match="one row per image"):
        v1_tuning(np.ones((len(metadata) - 1, 3)), metadata)
    with pytest.raises(TopoError, match="one row per image"):
        v1_tuning(np.ones((len(metadata), 3)), metadata.drop(columns="color"))
