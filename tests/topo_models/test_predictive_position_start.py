"""The readout's data start: positions fitted to targets, pixels mapped onto the core's grid."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from topo_models import TopoError
from topo_models.predictive import sensorium_cnn
from topo_models.predictive.readouts import FullGaussian2d

PREDICTOR = {"hidden_layers": 1, "hidden_features": 30, "final_tanh": True}


def cortex(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 800, (n, 2))


def retinotopy(coords: np.ndarray) -> np.ndarray:
    """A smooth, rotated and mirrored map of cortex into (-0.8, 0.8)², as grid units."""
    centred = (coords - 400) / 500
    return 0.85 * np.stack([-centred[:, 1] + 0.2 * centred[:, 0], centred[:, 0]], axis=1)


def test_a_position_mlp_is_fitted_to_a_smooth_map_of_cortex():
    coords = cortex(200)
    readout = FullGaussian2d((4, 8, 8), 200, grid_mean_predictor=PREDICTOR, source_grid=coords)
    target = retinotopy(coords)
    before = readout.positions().detach().numpy()
    readout.start_positions_at(torch.tensor(target))
    after = readout.positions().detach().numpy()
    assert np.abs(before - target).max() > 0.3  # a random start is far from it
    assert np.median(np.abs(after - target)) < 0.02  # a grid unit is 27 px of the core's map
    assert np.abs(after - target).max() < 0.1
    assert all(p.grad is None for p in readout.parameters())


def test_a_few_wrong_targets_barely_move_the_fitted_map():
    coords = cortex(300, seed=1)
    readout = FullGaussian2d((4, 8, 8), 300, grid_mean_predictor=PREDICTOR, source_grid=coords)
    target = retinotopy(coords)
    noisy = target.copy()
    noisy[::30] = -noisy[::30]  # 10 of 300 estimates point to the mirror position
    readout.start_positions_at(torch.tensor(noisy))
    after = readout.positions().detach().numpy()
    assert np.median(np.abs(after - target)) < 0.03


def test_a_learned_mu_is_set_to_the_targets_inside_the_tanh_range():
    readout = FullGaussian2d((4, 8, 8), 3)
    readout.start_positions_at(torch.tensor([[0.5, -0.2], [1.4, 0.0], [-0.3, -2.0]]))
    np.testing.assert_allclose(
        readout.positions().detach().numpy(), [[0.5, -0.2], [0.95, 0.0], [-0.3, -0.95]]
    )


def test_nan_targets_are_refused():
    readout = FullGaussian2d((4, 8, 8), 2)
    with pytest.raises(TopoError, match="NaN"):
        readout.start_positions_at(torch.tensor([[0.0, float("nan")], [0.0, 0.0]]))


def test_pixels_of_the_input_become_grid_units_of_the_cropped_core_output():
    """The baseline core crops 4 px a side (9x9 without padding): a 36 x 64 input gives a
    28 x 56 map whose corner pixels are input pixels (4, 4) and (59, 31)."""
    coords = cortex(150, seed=2)
    grid = retinotopy(coords)  # where the fields are, in the core's grid units
    pixels = np.stack([4 + (grid[:, 0] + 1) / 2 * 55, 4 + (grid[:, 1] + 1) / 2 * 27], axis=1)
    model = sensorium_cnn(
        {"s": 150},
        {"s": coords},
        position_start="data",
        rf_centres_px={"s": pixels},
        input_size=(36, 64),
        seed=0,
    )
    error = np.abs(model.positions("s").detach().numpy() - grid)
    assert np.median(error) < 0.02 and error.max() < 0.1
    published = sensorium_cnn({"s": 150}, {"s": coords}, seed=0)  # position_start="random"
    assert np.abs(published.positions("s").detach().numpy() - grid).max() > 0.3


def test_the_data_start_without_estimates_says_what_it_needs():
    with pytest.raises(TopoError, match="receptive-field estimates"):
        sensorium_cnn({"s": 5}, {"s": cortex(5)}, position_start="data")
    with pytest.raises(TopoError, match="position start"):
        sensorium_cnn({"s": 5}, {"s": cortex(5)}, position_start="sta")
