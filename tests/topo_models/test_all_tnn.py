"""All-TNN: the locally connected layer, the neighbour-cosine loss, the trunk and its sheets."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import topo_models.trunks.all_tnn  # noqa: F401  (registers "all_tnn" before __init__ does)
from topo_models import TopoError, create_model
from topo_models.losses.neighbour_cosine import (
    NeighbourCosineLoss,
    hypercolumn_sheet,
    neighbour_cosine_loss,
)
from topo_models.positions import NetworkPositions
from topo_models.trunks.all_tnn import SHEET_NAMES, AllTNN, all_tnn
from topo_models.trunks.locally_connected import LocallyConnected2d


def small_trunk(**kwargs: object) -> AllTNN:
    torch.manual_seed(0)
    return create_model("all_tnn", num_classes=7, width=0.25, **kwargs)


# --- LocallyConnected2d -------------------------------------------------------------------


def test_locally_connected_equals_an_explicit_loop_over_positions():
    torch.manual_seed(0)
    layer = LocallyConnected2d(2, 3, (7, 6), kernel_size=(3, 2), stride=(2, 1), padding=(1, 0))
    layer = layer.double()
    x = torch.randn(4, 2, 7, 6, dtype=torch.float64, requires_grad=True)
    assert layer.output_size == (4, 5)
    padded = F.pad(x, (0, 0, 1, 1))  # (left, right, top, bottom)
    columns = []
    for i in range(4):
        for j in range(5):
            patch = padded[:, :, 2 * i : 2 * i + 3, j : j + 2]  # (batch, in, kh, kw)
            units = [
                (patch * layer.weight[i, j, o].permute(2, 0, 1)).sum((1, 2, 3))
                + layer.bias[o, i, j]
                for o in range(3)
            ]
            columns.append(torch.stack(units, dim=1))  # (batch, out)
    expected = torch.stack(columns, dim=-1).reshape(4, 3, 4, 5)
    ours = layer(x)
    torch.testing.assert_close(ours, expected)
    probe = torch.randn_like(ours)
    wanted = torch.autograd.grad((expected * probe).sum(), (x, layer.weight, layer.bias))
    found = torch.autograd.grad((ours * probe).sum(), (x, layer.weight, layer.bias))
    for a, b in zip(found, wanted, strict=True):
        torch.testing.assert_close(a, b)


def test_locally_connected_equals_conv2d_when_every_position_has_the_same_kernel():
    torch.manual_seed(1)
    conv = nn.Conv2d(3, 4, kernel_size=3, stride=2, padding=1).double()
    layer = LocallyConnected2d(3, 4, (9, 8), kernel_size=3, stride=2, padding=1).double()
    with torch.no_grad():
        kernel = conv.weight.permute(0, 2, 3, 1)  # (out, kh, kw, in): the layer's layout
        layer.weight.copy_(kernel.expand(*layer.output_size, -1, -1, -1, -1))
        layer.bias.copy_(conv.bias[:, None, None].expand(-1, *layer.output_size))
    x = torch.randn(2, 3, 9, 8, dtype=torch.float64, requires_grad=True)
    x_conv = x.detach().clone().requires_grad_()
    ours, theirs = layer(x), conv(x_conv)
    torch.testing.assert_close(ours, theirs)
    ours.square().sum().backward()
    theirs.square().sum().backward()
    torch.testing.assert_close(x.grad, x_conv.grad)
    # The shared kernel's gradient is the sum of the per-position gradients.
    torch.testing.assert_close(layer.weight.grad.sum((0, 1)), conv.weight.grad.permute(0, 2, 3, 1))


def test_locally_connected_without_bias_has_none_and_refuses_a_wrong_input():
    layer = LocallyConnected2d(1, 2, 5, kernel_size=3, bias=False)
    assert layer.bias is None and layer(torch.randn(1, 1, 5, 5)).shape == (1, 2, 3, 3)
    with pytest.raises(TopoError, match=r"\(batch, 1, 5, 5\)[\s\S]*\(1, 1, 6, 5\)"):
        layer(torch.randn(1, 1, 6, 5))
    with pytest.raises(TopoError, match="no output position"):
        LocallyConnected2d(1, 2, 2, kernel_size=3)


# --- neighbour_cosine_loss ----------------------------------------------------------------


def numpy_neighbour_cosine(sheet: np.ndarray, wrap: bool) -> float:
    """Unit by unit: the cosine with the right and the bottom neighbour, one mean each."""
    rows, cols, _ = sheet.shape
    right, bottom = [], []
    for r in range(rows):
        for c in range(cols):
            u = sheet[r, c]
            for (rr, cc), found in (((r, c + 1), right), ((r + 1, c), bottom)):
                if wrap:
                    rr, cc = rr % rows, cc % cols
                elif rr == rows or cc == cols:
                    continue
                v = sheet[rr, cc]
                found.append(u @ v / (np.linalg.norm(u) * np.linalg.norm(v)))
    return (1 - (np.mean(right) + np.mean(bottom)) / 2) / 2


def test_neighbour_cosine_loss_of_a_hand_worked_sheet_with_and_without_wrap():
    e1 = np.array([1.0, 0.0])
    # Two equal rows (3·e1, e1, -2·e1): right cosines 1, -1 and, wrapping, -1; bottom all 1.
    row = [3 * e1, e1, -2 * e1]
    sheet = torch.tensor(np.array([row, row]))
    # wrap: right mean -1/3, bottom 1 → c = 1/3 → L = 1/3. No wrap: right mean 0 → L = 1/4.
    assert neighbour_cosine_loss(sheet).item() == pytest.approx(1 / 3)
    assert neighbour_cosine_loss(sheet, wrap=False).item() == pytest.approx(1 / 4)


@pytest.mark.parametrize("wrap", [True, False])
def test_neighbour_cosine_loss_matches_a_unit_by_unit_numpy_loop(wrap):
    sheet = np.random.default_rng(0).normal(size=(4, 5, 3))
    value = neighbour_cosine_loss(torch.tensor(sheet), wrap=wrap).item()
    assert value == pytest.approx(numpy_neighbour_cosine(sheet, wrap))


@pytest.mark.parametrize("wrap", [True, False])
def test_neighbour_cosine_loss_is_0_for_a_constant_sheet_and_1_for_opposite_neighbours(wrap):
    vector = torch.tensor([0.3, -1.0, 2.0], dtype=torch.float64)
    constant = vector.expand(4, 6, 3)
    assert neighbour_cosine_loss(constant, wrap=wrap).item() == pytest.approx(0.0, abs=1e-12)
    signs = (-1.0) ** (torch.arange(4)[:, None] + torch.arange(6)[None, :])  # checkerboard
    opposite = signs[..., None].double() * vector
    assert neighbour_cosine_loss(opposite, wrap=wrap).item() == pytest.approx(1.0)


def test_neighbour_cosine_loss_refuses_a_sheet_that_is_not_a_grid_of_vectors():
    for shape in ((4, 4), (1, 4, 2)):
        with pytest.raises(TopoError, match=re.escape(f"found: {shape}")):
            neighbour_cosine_loss(torch.ones(shape))


# --- hypercolumn sheets -------------------------------------------------------------------


def test_hypercolumn_sheet_tiles_channels_row_major_into_blocks():
    layer = LocallyConnected2d(1, 4, (3, 4), kernel_size=2)  # 2×3 positions, 2×2 blocks
    with torch.no_grad():
        # Every kernel entry of unit (c, i, j) holds 100 i + 10 j + c; its bias holds -that.
        code = (
            100 * torch.arange(2)[:, None, None] + 10 * torch.arange(3)[None, :, None]
        ) + torch.arange(4)[None, None, :]
        layer.weight.copy_(code[..., None, None, None].float().expand_as(layer.weight))
        layer.bias.copy_(-code.permute(2, 0, 1).float())
    sheet = hypercolumn_sheet(layer, "v1")
    assert sheet.shape == (4, 6, 1 * 2 * 2 + 1)  # (2·√4, 3·√4, kernel + bias)
    expected = np.array(
        [
            [0, 1, 10, 11, 20, 21],
            [2, 3, 12, 13, 22, 23],
            [100, 101, 110, 111, 120, 121],
            [102, 103, 112, 113, 122, 123],
        ]
    )
    np.testing.assert_array_equal(sheet[..., 0].detach().numpy(), expected)
    np.testing.assert_array_equal(sheet[..., -1].detach().numpy(), -expected)  # bias last


def test_a_layer_with_a_non_square_channel_count_is_refused_naming_it():
    layer = LocallyConnected2d(1, 5, 4, kernel_size=3)
    with pytest.raises(TopoError, match=r"'v4'[\s\S]*4 or 9[\s\S]*found: 5"):
        hypercolumn_sheet(layer, "v4")
    model = nn.Sequential()
    model.add_module("v4", layer)
    with pytest.raises(TopoError, match="'v4'"):
        NeighbourCosineLoss({"v4": 1.0})(model)


# --- NeighbourCosineLoss ------------------------------------------------------------------


def test_neighbour_cosine_loss_object_weights_layers_and_reports_each_detached():
    model = small_trunk()
    loss = NeighbourCosineLoss({"sheet0": 2.0, "sheet3": 0.5}, wrap=False)
    total, per_layer = loss(model)
    assert list(per_layer) == ["sheet0", "sheet3"]
    assert not any(value.requires_grad for value in per_layer.values())
    for name, value in per_layer.items():
        direct = neighbour_cosine_loss(hypercolumn_sheet(getattr(model, name)), wrap=False)
        torch.testing.assert_close(value, direct.detach())
    torch.testing.assert_close(total, 2.0 * per_layer["sheet0"] + 0.5 * per_layer["sheet3"])
    total.backward()
    assert model.sheet0.weight.grad.abs().sum() > 0 and model.sheet0.bias.grad.abs().sum() > 0
    assert model.sheet1.weight.grad is None


def test_neighbour_cosine_loss_object_refuses_unknown_layers_and_bad_weights():
    model = small_trunk()
    with pytest.raises(TopoError, match=r"'layer9'[\s\S]*sheet0"):
        NeighbourCosineLoss({"layer9": 1.0})(model)
    with pytest.raises(TopoError, match=r"'norm0'[\s\S]*ChannelLayerNorm"):
        NeighbourCosineLoss({"norm0": 1.0})(model)
    for weights in ({}, {"sheet0": -1.0}, {"sheet0": float("nan")}):
        with pytest.raises(TopoError):
            NeighbourCosineLoss(weights)


# --- the trunk ----------------------------------------------------------------------------


def test_all_tnn_is_registered_and_returns_logits_and_six_sheet_features():
    model = small_trunk()
    assert isinstance(model, AllTNN)
    logits, features = model(torch.randn(2, 3, 64, 64))
    assert logits.shape == (2, 7)
    assert list(features) == list(SHEET_NAMES) == list(model.sheets())
    sides = {"sheet0": 2, "sheet1": 2, "sheet2": 2, "sheet3": 4, "sheet4": 4, "sheet5": 13}
    positions = {"sheet0": 22, "sheet1": 11, "sheet2": 11, "sheet3": 5, "sheet4": 5, "sheet5": 2}
    for name, feature in features.items():
        assert feature.shape == (2, sides[name] ** 2, positions[name], positions[name])
        assert model.sides[name] == sides[name]
    logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_all_tnn_defaults_are_the_64_px_cpu_scale():
    model = create_model("all_tnn")
    logits, features = model(torch.randn(1, 3, 64, 64))
    assert logits.shape == (1, 565)
    assert [f.shape[1] for f in features.values()] == [16, 25, 25, 64, 64, 625]


def test_all_tnn_published_layout_at_150_px():
    with torch.device("meta"):
        model = all_tnn(input_size=150, width=1.0, padding="valid", num_classes=565)
        _, features = model(torch.empty(1, 3, 150, 150))
    layers = model.sheets()
    assert [layer.out_channels for layer in layers.values()] == [64, 81, 81, 256, 256, 2500]
    assert [layer.kernel_size[0] for layer in layers.values()] == [7, 3, 3, 3, 3, 3]
    assert [layer.stride[0] for layer in layers.values()] == [3, 1, 1, 1, 1, 1]
    assert [f.shape[-1] for f in features.values()] == [48, 22, 20, 8, 6, 1]
    assert model.pool_after == {"sheet0", "sheet2", "sheet4"}
    assert model.readout.in_features == 2500 and model.readout.out_features == 565


def test_all_tnn_refuses_a_wrong_input_naming_the_layer_and_sizes():
    model = small_trunk()
    with pytest.raises(TopoError, match=r"sheet0[\s\S]*\(batch, 3, 64, 64\)[\s\S]*60, 60"):
        model(torch.randn(1, 3, 60, 60))
    with pytest.raises(TopoError, match=r"'sheet4'[\s\S]*>= 148[\s\S]*input_size 64"):
        all_tnn(input_size=64, padding="valid")
    with pytest.raises(TopoError, match=r"'sheet5'[\s\S]*input_size 147 leaves sheet5 0"):
        with torch.device("meta"):
            all_tnn(input_size=147, padding="valid")


# --- sheet positions ----------------------------------------------------------------------


def test_sheet_positions_cover_every_unit_in_flatten_order_where_the_loss_puts_it():
    model = small_trunk()
    _, features = model(torch.zeros(1, 3, 64, 64))
    positions = model.sheet_positions(n_neighborhoods=50)
    assert isinstance(positions, NetworkPositions) and list(positions) == list(SHEET_NAMES)
    for name, feature in features.items():
        layer_positions = positions[name]
        coords = layer_positions.coordinates.astype(int)
        assert layer_positions.dims == tuple(feature.shape[1:])
        assert len(coords) == feature[0].numel()
        # Every sheet cell holds exactly one unit.
        sheet = hypercolumn_sheet(getattr(model, name)).detach()
        assert len({tuple(c) for c in coords}) == sheet.shape[0] * sheet.shape[1] == len(coords)
        # The unit at flatten index n = (c, i, j) finds its own weights at (y, x) on the sheet.
        layer = getattr(model, name)
        vectors = layer.weight.detach().permute(2, 0, 1, 3, 4, 5).reshape(len(coords), -1)
        torch.testing.assert_close(sheet[coords[:, 1], coords[:, 0], :-1], vectors)
