"""Layouts: TDANN's retinotopic init, fuzzy jitter, uniform sheets, and building for a model."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from topo_models import ResNet18Spatial
from topo_models.errors import TopoError
from topo_models.positions import (
    NetworkPositions,
    RetinotopicLayout,
    UniformLayout,
    get_scale,
    jitter_coordinates,
    layer_dims,
    retinotopic_coordinates,
    uniform_coordinates,
)
from topo_models.trunks import BLOCK_NAMES


def expected_centres(size: int, sheet: float) -> tuple[np.ndarray, float]:
    """TDANN's compute_rf_centers, written out independently."""
    overlap = min(0.1 * 56 / size, 1.0)
    half = sheet / (size - size * overlap + overlap) / 2
    return np.linspace(half, sheet - half, size), half


@pytest.fixture(scope="module")
def resnet() -> ResNet18Spatial:
    torch.manual_seed(0)
    return ResNet18Spatial()


def test_retinotopic_x_follows_column_and_y_follows_row():
    channels, height, width, sheet = 500, 20, 40, 20.0
    coords = retinotopic_coordinates((channels, height, width), sheet, np.random.default_rng(0))
    assert coords.shape == (channels * height * width, 2) and coords.dtype == np.float32
    grid = coords.reshape(channels, height, width, 2)  # channel-major flatten order
    mean_x = grid[..., 0].mean(axis=0)  # (row, column)
    mean_y = grid[..., 1].mean(axis=0)
    assert np.all(np.diff(mean_x, axis=1) > 0)  # x grows with the column
    assert np.all(np.diff(mean_y, axis=0) > 0)  # y grows with the row
    # ...and x does not depend on the row, nor y on the column.
    assert np.ptp(mean_x, axis=0).max() < 0.25 * np.diff(mean_x, axis=1).min()
    assert np.ptp(mean_y, axis=1).max() < 0.25 * np.diff(mean_y, axis=0).min()


def test_every_unit_lies_within_its_hypercolumn_and_inside_the_sheet():
    channels, height, width, sheet = 50, 6, 10, 20.0
    coords = retinotopic_coordinates((channels, height, width), sheet, np.random.default_rng(1))
    centre_x, half_x = expected_centres(width, sheet)
    centre_y, half_y = expected_centres(height, sheet)
    grid = coords.reshape(channels, height, width, 2).astype(np.float64)
    assert np.all(np.abs(grid[..., 0] - centre_x[None, None, :]) <= half_x + 1e-5)
    assert np.all(np.abs(grid[..., 1] - centre_y[None, :, None]) <= half_y + 1e-5)
    assert coords.min() >= 0 and coords.max() <= sheet


@pytest.mark.parametrize(
    ("size", "zoom", "overlap"), [(56, 1.0, 0.1), (7, 1.0, 0.8), (8, 3.5, 0.2), (2, 3.5, 0.8)]
)  # TDANN: 0.1 at 56 px, 0.8 at 7 px; at a 64-px input (zoom 3.5) an 8-px map counts as 28 px
def test_hypercolumn_width_follows_tdanns_overlap_formula_at_its_map_size(size, zoom, overlap):
    sheet = 10.0
    half = sheet / (size - size * overlap + overlap) / 2  # rf_width / 2
    centres = np.linspace(half, sheet - half, size)
    coords = retinotopic_coordinates((2000, 1, size), sheet, np.random.default_rng(2), zoom)
    x = coords[:, 0].reshape(2000, size).astype(np.float64)
    assert np.all(np.abs(x - centres) <= half + 1e-5)
    assert np.all(x.max(axis=0) - x.min(axis=0) > 1.95 * half)  # patches are that wide
    np.testing.assert_allclose((x.max(axis=0) + x.min(axis=0)) / 2, centres, atol=0.02 * half)


def test_a_64px_build_gives_the_v1_sheet_tdanns_224px_hypercolumn_overlap(resnet):
    """At 64 px layer2.0 is 8 x 8; it gets the overlap of TDANN's 28 x 28 map (0.2), not the
    0.7 that TDANN's formula gives an 8-position map (patches 2.1 times as wide)."""
    layer = RetinotopicLayout(n_neighborhoods=20, seed=0).build(resnet, 64)["layer2.0"]
    sheet = get_scale("training").size_mm("V1")
    half = sheet / (8 - 8 * 0.2 + 0.2) / 2
    x = layer.coordinates[:, 0].reshape(layer.dims).astype(np.float64)  # (C, H, W)
    assert np.all(np.abs(x - np.linspace(half, sheet - half, 8)) <= half + 1e-5)
    spread = x.max(axis=(0, 1)) - x.min(axis=(0, 1))
    assert np.all(spread > 1.95 * half)  # patches are that wide, no narrower


def test_jitter_keeps_each_axis_range_and_moves_units():
    coords = retinotopic_coordinates((8, 7, 9), 24.5, np.random.default_rng(3))
    fuzzy = jitter_coordinates(coords, 0.3, np.random.default_rng(4))
    np.testing.assert_allclose(fuzzy.min(axis=0), coords.min(axis=0), atol=1e-5)
    np.testing.assert_allclose(fuzzy.max(axis=0), coords.max(axis=0), atol=1e-5)
    moved = np.linalg.norm(fuzzy - coords, axis=1)
    assert np.median(moved) > 0.1
    np.testing.assert_array_equal(jitter_coordinates(coords, 0.0, np.random.default_rng()), coords)


def test_uniform_coordinates_fill_the_square_sheet():
    coords = uniform_coordinates(5000, 16.0, np.random.default_rng(5))
    assert coords.shape == (5000, 2) and coords.min() >= 0 and coords.max() <= 16.0
    assert np.all(coords.min(axis=0) < 0.1) and np.all(coords.max(axis=0) > 15.9)


def test_layer_dims_match_the_real_forward_and_restore_train_mode(resnet):
    resnet.train()
    bn_before = resnet.bn1.running_mean.clone()
    dims = layer_dims(resnet, 64)
    assert resnet.training and all(m.training for m in resnet.modules())
    torch.testing.assert_close(resnet.bn1.running_mean, bn_before)  # ran in eval mode
    resnet.eval()
    with torch.no_grad():
        _, features = resnet(torch.zeros(1, 3, 64, 64))
    assert dims == {name: tuple(f.shape[1:]) for name, f in features.items()}
    assert layer_dims(resnet, (64, 96))["layer1.0"] == (64, 16, 24)
    assert not resnet.training  # eval stays eval


@pytest.mark.parametrize("layout_cls", [RetinotopicLayout, UniformLayout])
def test_layout_builds_valid_training_scale_positions_for_resnet18(resnet, layout_cls):
    positions = layout_cls(n_neighborhoods=300, seed=0).build(resnet, 64)
    assert isinstance(positions, NetworkPositions)
    assert list(positions) == list(BLOCK_NAMES) and positions.scale == "training"
    preset = get_scale("training")
    positions.check_dims(layer_dims(resnet, 64))
    for name, layer in positions.items():
        area = ResNet18Spatial.cortical_areas[name]
        assert layer.scale == "training"
        assert len(layer.coordinates) == math.prod(layer.dims)
        assert layer.coordinates.min() >= 0 and layer.coordinates.max() <= preset.size_mm(area)
        expected_width = min(preset.width_mm(area) * 224 / 64, preset.size_mm(area))
        assert layer.neighborhood_width == pytest.approx(expected_width)
        idx = layer.neighborhood_indices
        assert idx.min() >= 0 and idx.max() < len(layer) and idx.shape[1] >= 25
        assert all(len(np.unique(row)) == idx.shape[1] for row in idx[:20])
    # layer1 at 64 px keeps about TDANN's ~79 units per window thanks to the width zoom.
    assert 40 < positions["layer1.0"].neighborhood_indices.shape[1] < 120


@pytest.mark.parametrize("layout_cls", [RetinotopicLayout, UniformLayout])
def test_same_seed_gives_identical_positions_and_another_seed_differs(resnet, layout_cls):
    first = layout_cls(n_neighborhoods=100, seed=3).build(resnet, 32)
    again = layout_cls(n_neighborhoods=100, seed=3).build(resnet, 32)
    other = layout_cls(n_neighborhoods=100, seed=4).build(resnet, 32)
    for name in first:
        np.testing.assert_array_equal(first[name].coordinates, again[name].coordinates)
        np.testing.assert_array_equal(
            first[name].neighborhood_indices, again[name].neighborhood_indices
        )
        assert not np.array_equal(first[name].coordinates, other[name].coordinates)
    # layers draw from distinct streams
    assert not np.allclose(first["layer1.0"].coordinates, first["layer1.1"].coordinates)


def test_retinotopic_layout_builds_human_scale_with_jitter(resnet):
    positions = RetinotopicLayout(scale="human", jitter_mm=0.3, n_neighborhoods=100).build(
        resnet, 64
    )
    assert positions.scale == "human"
    assert positions["layer4.1"].coordinates.max() > get_scale("training").size_mm("VTC")


class TinyNet(nn.Module):
    """A conv layer and a 1-D layer, for the (N,) branch and the area checks."""

    cortical_areas = {"conv": "V1", "fc": "VTC"}

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 10)

    def forward(self, x):
        conv = self.conv(x)
        fc = self.fc(conv.mean(dim=(2, 3)))
        return fc, {"conv": conv, "fc": fc}


def test_one_dimensional_layer_is_placed_uniformly():
    positions = RetinotopicLayout(n_neighborhoods=20).build(TinyNet(), 8)
    assert positions["conv"].dims == (4, 8, 8) and positions["fc"].dims == (10,)
    assert positions["fc"].coordinates.shape == (10, 2)
    assert positions["fc"].neighborhood_indices.shape == (20, 10)  # the whole tiny layer


def test_model_without_areas_or_with_an_unmapped_layer_is_a_topo_error():
    model = TinyNet()
    model.cortical_areas = {"conv": "V1"}
    with pytest.raises(TopoError, match="fc"):
        UniformLayout(n_neighborhoods=20).build(model, 8)
    model.cortical_areas = None
    with pytest.raises(TopoError, match="cortical_areas"):
        UniformLayout(n_neighborhoods=20).build(model, 8)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"scale": "macaque"},
        {"n_neighborhoods": 0},
        {"reference_input_size": 0},
        {"seed": -1},
        {"jitter_mm": -0.1},
    ],
)
def test_bad_layout_arguments_are_topo_errors(kwargs):
    with pytest.raises(TopoError):
        RetinotopicLayout(**kwargs)
    if "jitter_mm" not in kwargs:
        with pytest.raises(TopoError):
            UniformLayout(**kwargs)


def test_bad_input_size_is_a_topo_error(resnet):
    with pytest.raises(TopoError, match="input_size"):
        layer_dims(resnet, (64, 64, 3))
