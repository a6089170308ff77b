"""Learned positions written as topo sheet positions (the position files of every family)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from topo_models import TopoError
from topo_models.positions import NetworkPositions
from topo_models.spatial import SpatialCNN, SpatialMLP


def test_mlp_positions_round_trip_through_the_position_files(tmp_path):
    model = SpatialMLP(input_shape=(1, 8, 8), n_tasks=2, labels=5, widths=(6, 4), seed=3)
    model.sheet_positions().save(tmp_path)
    loaded = NetworkPositions.load(tmp_path)
    assert list(loaded) == ["hidden1", "hidden2", "output"]
    for name, layer in model.spatial_layers().items():
        assert loaded[name].dims == (layer.positions.shape[0],)
        np.testing.assert_allclose(loaded[name].coordinates, layer.positions.detach().numpy())


def test_a_conv_channel_position_is_shared_by_all_its_locations():
    model = SpatialCNN(input_shape=(1, 8, 8), n_tasks=2, labels=3, channels=(4,), seed=0)
    layer = model.sheet_positions()["conv1"]
    assert layer.dims == (4, 8, 8)
    expected = np.repeat(model.conv1.positions.detach().numpy(), 64, axis=0)  # channel-major
    np.testing.assert_allclose(layer.coordinates, expected)


def test_positions_of_other_dimensions_are_refused():
    model = SpatialMLP(input_shape=(1, 2, 2), n_tasks=1, labels=2, widths=(3,), dim=3)
    with pytest.raises(TopoError, match="two-dimensional"):
        model.sheet_positions()
    assert torch.is_tensor(model.hidden1.positions)
