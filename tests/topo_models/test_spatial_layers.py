"""Spatial layers: Linear / Conv2d with one learnable position per output unit."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from topo_models import TopoError
from topo_models.spatial import SpatialConv2d, SpatialLinear, is_spatial


def test_spatial_linear_computes_its_linear_map_and_has_one_position_per_neuron():
    layer = SpatialLinear(5, 3, dim=4)
    x = torch.randn(7, 5)
    expected = x.numpy() @ layer.weight.detach().numpy().T + layer.bias.detach().numpy()
    np.testing.assert_allclose(layer(x).detach().numpy(), expected, rtol=1e-5, atol=1e-6)
    assert isinstance(layer, nn.Linear)
    assert layer.positions.shape == (3, 4)
    assert isinstance(layer.positions, nn.Parameter) and layer.positions.requires_grad
    assert set(layer.state_dict()) == {"weight", "bias", "positions"}


def test_positions_are_standard_normal_draws_of_the_given_generator():
    layer = SpatialLinear(2, 6, generator=torch.Generator().manual_seed(11))
    expected = torch.randn(6, 2, generator=torch.Generator().manual_seed(11))
    torch.testing.assert_close(layer.positions.detach(), expected, rtol=0, atol=0)
    same = SpatialLinear(2, 6, generator=torch.Generator().manual_seed(11))
    other = SpatialLinear(2, 6, generator=torch.Generator().manual_seed(12))
    assert torch.equal(same.positions, layer.positions)
    assert not torch.equal(other.positions, layer.positions)


def test_spatial_conv_keeps_the_map_size_and_computes_its_convolution():
    layer = SpatialConv2d(3, 4, kernel_size=3, generator=torch.Generator().manual_seed(0))
    x = torch.randn(2, 3, 9, 7)
    out = layer(x)
    expected = F.conv2d(x, layer.weight, layer.bias, padding=1)  # "same" for a 3×3 kernel
    torch.testing.assert_close(out, expected)
    assert out.shape == (2, 4, 9, 7)
    assert layer.positions.shape == (4, 2)
    assert isinstance(layer, nn.Conv2d)
    assert layer.weight.shape == (4, 3, 3, 3)


def test_is_spatial_is_true_for_spatial_layers_only():
    assert is_spatial(SpatialLinear(2, 2)) and is_spatial(SpatialConv2d(1, 2))
    assert not any(is_spatial(m) for m in (nn.Linear(2, 2), nn.Conv2d(1, 2, 3), nn.ReLU()))


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: SpatialLinear(3, 2, dim=0), "dim"),
        (lambda: SpatialLinear(0, 2), "in_features"),
        (lambda: SpatialLinear(3, -1), "out_features"),
        (lambda: SpatialConv2d(1, 2, stride=2), "stride"),
        (lambda: SpatialConv2d(1, 2, padding="full"), "padding"),
        (lambda: SpatialConv2d(1, 2, kernel_size=0), "kernel_size"),
        (lambda: SpatialConv2d(1, 2, dim=-3), "dim"),
    ],
)
def test_bad_layer_arguments_name_the_field(build, field):
    with pytest.raises(TopoError, match=f"field: {field}"):
        build()


def test_strided_valid_convolution_is_allowed():
    layer = SpatialConv2d(1, 2, kernel_size=3, stride=2, padding="valid")
    assert layer(torch.randn(1, 1, 9, 9)).shape == (1, 2, 4, 4)
