"""Category selectivity: Welch t, d', patches, RSA and co-localisation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from topo_eval.topography.category import (
    alpha_shape_area,
    category_rsa,
    colocalisation,
    d_prime,
    find_patches,
    selectivity_maps,
    selectivity_smoothness,
    selectivity_t,
)
from topo_models import TopoError


@pytest.fixture(name="responses")
def responses_fixture():
    rng = np.random.default_rng(0)
    responses = rng.normal(size=(60, 30)) * rng.uniform(0.5, 2, 30)
    on = np.zeros(60, dtype=bool)
    on[:17] = True
    responses[on, :10] += 1.5
    return responses, on


def test_welch_t_matches_scipy(responses):
    responses, on = responses
    expected = stats.ttest_ind(responses[on], responses[~on], equal_var=False).statistic
    np.testing.assert_allclose(selectivity_t(responses, on), expected, rtol=1e-10)


def test_d_prime_formula(responses):
    responses, on = responses
    a, b = responses[on], responses[~on]
    expected = (a.mean(0) - b.mean(0)) / np.sqrt((a.var(0, ddof=1) + b.var(0, ddof=1)) / 2)
    np.testing.assert_allclose(d_prime(responses, on), expected, rtol=1e-12)


def test_selectivity_maps_one_per_category(responses):
    responses, on = responses
    labels = np.where(on, "faces", np.where(np.arange(60) % 2, "places", "bodies"))
    categories, maps = selectivity_maps(responses, labels)
    assert categories.tolist() == ["bodies", "faces", "places"] and maps.shape == (3, 30)
    np.testing.assert_allclose(maps[1], selectivity_t(responses, on))
    _, primes = selectivity_maps(responses, labels, measure="d_prime")
    np.testing.assert_allclose(primes[1], d_prime(responses, on))


def test_bad_selectivity_input_raises(responses):
    responses, on = responses
    with pytest.raises(TopoError, match="2 categories"):
        selectivity_maps(responses, np.full(60, "faces"))
    with pytest.raises(TopoError, match="2 other images"):
        selectivity_t(responses, np.ones(60, dtype=bool))
    with pytest.raises(TopoError, match="boolean"):
        selectivity_t(responses, on.astype(int))
    bad = responses.copy()
    bad[3, 4] = np.nan
    with pytest.raises(TopoError, match="NaN") as error:
        d_prime(bad, on)
    assert error.value.field == "responses"


def grid_sheet(width_mm=70.0, n=141):
    axis = np.linspace(0, width_mm, n)
    x, y = np.meshgrid(axis, axis)
    return np.stack([x.ravel(), y.ravel()], axis=1)


def test_a_planted_patch_is_found_with_its_area():
    coords = grid_sheet()
    rng = np.random.default_rng(1)
    radius = 10.0
    inside = np.hypot(*(coords - [30.0, 40.0]).T) < radius
    t = np.where(inside, 4.0, 0.0) + rng.normal(0, 0.3, len(coords))
    patches = find_patches(coords, t, category="faces")
    assert len(patches) == 1
    patch = patches[0]
    # smoothing pulls the t = 2 contour of a convex step inside its edge (radius ~9.6 mm here)
    # and units within 1 mm of a patch pixel push it out again: the disk's area to ~10 %
    assert patch.area_mm2 == pytest.approx(np.pi * radius**2, rel=0.1)
    np.testing.assert_allclose(patch.centre_mm, [30.0, 40.0], atol=0.5)
    assert patch.category == "faces" and patch.n_units == len(patch.units)
    assert patch.mask.shape == (100, 100)
    assert inside[patch.units].mean() > 0.7 and inside.sum() <= patch.n_units


def test_patches_outside_the_area_range_are_dropped():
    coords = grid_sheet()
    centres = np.array([[20.0, 20.0], [50.0, 50.0]])
    t = np.zeros(len(coords))
    t[np.hypot(*(coords - centres[0]).T) < 3.0] = 8.0  # ~ 50 mm^2 after smoothing: too small
    t[np.hypot(*(coords - centres[1]).T) < 12.0] = 4.0
    patches = find_patches(coords, t)
    assert len(patches) == 1 and np.allclose(patches[0].centre_mm, centres[1], atol=0.5)
    assert len(find_patches(coords, t, min_area_mm2=10.0)) == 2
    assert find_patches(coords, np.zeros(len(coords))) == []


def test_alpha_shape_area_of_a_square_and_of_a_concave_l():
    square = grid_sheet(4.0, 9)
    assert alpha_shape_area(square, 0.1) == pytest.approx(16.0)
    l_shape = square[(square[:, 0] <= 1.0) | (square[:, 1] <= 1.0)]
    # concave: the L's 7 mm^2 and the inner corner's small triangles, not the hull's 12.5
    assert 7.0 <= alpha_shape_area(l_shape, 1.0) <= 7.5
    assert alpha_shape_area(square[:2], 0.1) == 0.0


def test_category_rsa_is_kendall_tau_of_the_rsm_lower_triangles():
    rng = np.random.default_rng(2)
    maps = rng.normal(size=(5, 200))
    assert category_rsa(maps, maps) == pytest.approx(1.0)
    other = rng.normal(size=(5, 80))
    lower = np.tril_indices(5, k=-1)
    expected = stats.kendalltau(np.corrcoef(maps)[lower], np.corrcoef(other)[lower]).statistic
    assert category_rsa(maps, other) == pytest.approx(expected)
    with pytest.raises(TopoError):
        category_rsa(maps[:1], other[:1])
    with pytest.raises(TopoError, match="same categories"):
        category_rsa(maps, other[:4])


def test_colocalisation_is_high_for_overlapping_and_low_for_separate_categories():
    coords = grid_sheet(70.0, 71)
    x = coords[:, 0]
    faces = np.where(x < 35, 6.0, 0.0) + np.where(x < 20, 1.0, 0.0)
    bodies = np.where(x < 30, 5.0, 0.0)
    places = np.where(x > 40, 5.0, 0.0)
    result = colocalisation(coords, np.stack([faces, bodies, places]), window_mm=7.0)
    assert result.shape == (3, 3)
    np.testing.assert_allclose(np.diag(result), 1.0)
    assert result[0, 1] > 0.8 and result[0, 2] < 0.2
    with pytest.raises(TopoError):
        colocalisation(coords, faces[None], window_mm=7.0)


def test_selectivity_smoothness_uses_responsive_units_only():
    coords = grid_sheet(60.0, 41)
    t = coords[:, 0] / 6.0
    mean_response = np.where(coords[:, 1] > 30, 1.0, 0.0)
    curves = selectivity_smoothness(coords, t, mean_response, n_samples=2, sample_size=300)
    assert curves.curves.shape == (2, 9) and np.nanmax(curves.curves) <= 10.0
    with pytest.raises(TopoError, match="respond"):
        selectivity_smoothness(coords, t, np.zeros(len(coords)))
