"""RF centres estimated from trials: planted fields of either sign are found where they are."""

from __future__ import annotations

import numpy as np
import pytest

from topo_data.errors import TopoDataError
from topo_data.sensorium.receptive_fields import estimate_rf_centres


def planted(rng: np.random.Generator, trials: int = 2000, height: int = 18, width: int = 32):
    """White-noise images and LN neurons with a Gaussian ON, OFF or odd (two-lobed) field."""
    centres = np.stack([rng.uniform(3, width - 4, 12), rng.uniform(3, height - 4, 12)], axis=1)
    rows, columns = np.mgrid[0:height, 0:width]
    fields = []
    for index, (x, y) in enumerate(centres):
        blob = np.exp(-((columns - x) ** 2 + (rows - y) ** 2) / (2 * 1.5**2))
        kind = index % 3
        fields.append(blob if kind == 0 else -blob if kind == 1 else blob * (columns - x))
    fields = np.stack(fields).reshape(len(centres), -1)
    images = rng.normal(size=(trials, height, width))
    drive = images.reshape(trials, -1) @ fields.T
    responses = rng.poisson(np.log1p(np.exp(drive / drive.std(axis=0))))
    return images, responses.astype(np.float32), centres


def test_planted_fields_of_every_sign_are_found_within_a_pixel_or_two():
    images, responses, centres = planted(np.random.default_rng(0))
    found = estimate_rf_centres(images, responses)
    assert found.shape == centres.shape
    error = np.abs(found - centres)
    # the odd field's centre is between its two lobes, each lobe ~1.5 px away along x
    assert np.all(error[0::3] <= 1.0) and np.all(error[1::3] <= 1.0)
    assert np.all(error[2::3, 1] <= 1.0) and np.all(error[2::3, 0] <= 2.5)


def test_a_neuron_that_never_varies_lands_at_the_image_centre():
    images, responses, _ = planted(np.random.default_rng(1), trials=200)
    responses[:, 4] = 3.0
    found = estimate_rf_centres(images, responses)
    np.testing.assert_array_equal(found[4], [(32 - 1) / 2, (18 - 1) / 2])


def test_mismatched_trials_are_refused():
    with pytest.raises(TopoDataError, match="trials"):
        estimate_rf_centres(np.zeros((10, 4, 4)), np.zeros((9, 2)))
