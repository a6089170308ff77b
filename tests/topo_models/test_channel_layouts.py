"""Channel sheets of the weight regularisers, and their tiling over a map's output positions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from topo_models.errors import TopoError
from topo_models.losses import NeighbourCosineLoss, TopoLoss, WiringCost, neighbour_cosine_loss
from topo_models.losses.wiring_cost import unit_sheet
from topo_models.positions import LayerPositions, channel_grid, tile_channels


def test_channel_grid_is_topolosss_row_major_most_square_sheet():
    grid = channel_grid(6)  # 2 × 3: channels 0 1 2 / 3 4 5
    expected_cells = [(0, 0), (1, 0), (2, 0), (0, 1), (1, 1), (2, 1)]  # (column, row)
    assert np.allclose(grid, [((c + 0.5) / 3, (r + 0.5) / 2) for c, r in expected_cells])


def test_tiling_puts_each_channel_at_its_place_inside_each_output_cell():
    channels, height, width = 4, 2, 3
    n = channels * height * width
    units = np.arange(n)
    coords = np.column_stack([units % 7, units % 5]).astype(float)  # bounding box [0,6]×[0,4]
    layer = LayerPositions("b", (channels, height, width), coords, np.zeros((1, 2), int), 1.0)
    xy = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0], [1.0, 2.0]])  # extent 1 × 2
    tiled = tile_channels(layer, xy).coordinates
    cell = np.array([6 / width, 4 / height])
    for c in range(channels):
        inside = 0.1 + 0.8 * xy[c] / np.array([1.0, 2.0])
        for i in range(height):
            for j in range(width):
                unit = c * height * width + i * width + j  # torch.flatten order (C, H, W)
                assert np.allclose(tiled[unit], (np.array([j, i]) + inside) * cell, atol=1e-5)
    assert tile_channels(layer, xy).dims == layer.dims
    with pytest.raises(TopoError, match="do not match"):
        tile_channels(layer, xy[:3])


def _cosine(a, b):
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def test_neighbour_cosine_on_a_convolution_smooths_its_channel_sheet():
    torch.manual_seed(0)
    conv = nn.Conv2d(2, 6, 3)  # 6 channels: a 2 × 3 sheet
    vectors = np.concatenate(
        [conv.weight.detach().reshape(6, -1).numpy(), conv.bias.detach().numpy()[:, None]], 1
    )
    sheet = vectors.reshape(2, 3, -1)
    right = np.mean(
        [_cosine(sheet[r, c], sheet[r, (c + 1) % 3]) for r in range(2) for c in range(3)]
    )
    down = np.mean(
        [_cosine(sheet[r, c], sheet[(r + 1) % 2, c]) for r in range(2) for c in range(3)]
    )
    model = nn.Sequential(conv)
    loss = NeighbourCosineLoss({"0": 2.0})
    total, per_layer = loss(model)
    assert float(per_layer["0"]) == pytest.approx((1 - (right + down) / 2) / 2, abs=1e-6)
    assert float(total.detach()) == pytest.approx(2 * float(per_layer["0"]), abs=1e-6)
    total.backward()
    assert conv.weight.grad.abs().sum() > 0 and conv.bias.grad.abs().sum() > 0
    assert np.allclose(loss.channel_positions(model)["0"], channel_grid(6))
    assert float(neighbour_cosine_loss(torch.from_numpy(sheet))) == pytest.approx(
        float(per_layer["0"]), abs=1e-6
    )


def test_a_prime_channel_count_has_no_sheet_for_the_neighbour_cosine_loss():
    with pytest.raises(TopoError, match=r"'0'.*2 × 2") as error:
        NeighbourCosineLoss({"0": 1.0}).check(nn.Sequential(nn.Conv2d(2, 7, 3)))
    assert "7" in str(error.value)


def test_each_regulariser_says_where_it_put_the_channels():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 12, 3))
    topo = TopoLoss({"2": 1.0}, factor_h=1, factor_w=1).channel_positions(model)
    assert list(topo) == ["2"] and np.allclose(topo["2"], channel_grid(12))
    wiring = WiringCost(layer_weights={"0": 1.0, "2": 1.0}, seed=3).channel_positions(model)
    assert np.allclose(wiring["0"], unit_sheet(8, 3)) and np.allclose(
        wiring["2"], unit_sheet(12, 3)
    )
