"""ChannelSpatialCosts: SpatialNetworks' proximity and transport costs on a plain conv trunk,
with one learned position per channel."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from topo_models import TopoError
from topo_models.losses import ChannelSpatialCosts

EPS = 1e-8


def trunk() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 6, 3), nn.ReLU(), nn.Conv2d(5, 2, 1)
    )


def proximity_reference(p: np.ndarray) -> float:
    """mean over all pairs, the diagonal included, of exp(−sqrt(|p_i − p_j|² + eps))."""
    total = 0.0
    for a in p:
        for b in p:
            total += np.exp(-np.sqrt(((a - b) ** 2).sum() + EPS))
    return total / len(p) ** 2


def transport_reference(post: np.ndarray, pre: np.ndarray, weight: np.ndarray, norm: str) -> float:
    """mean over channel pairs of distance × the kernel's sum of |w| (l1) or w² (l2)."""
    total = 0.0
    for i, a in enumerate(post):
        for j, b in enumerate(pre):
            g = np.abs(weight[i, j]) if norm == "l1" else weight[i, j] ** 2
            total += np.sqrt(((a - b) ** 2).sum() + EPS) * g.sum()
    return total / (len(post) * len(pre))


@pytest.mark.parametrize("norm", ["l1", "l2"])
def test_the_cost_is_proximity_plus_transport_between_channels_that_feed_each_other(norm):
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 6, 3))
    costs = ChannelSpatialCosts(
        {"0": 0.5, "2": 2.0}, proximity=0.3, transport=1.7, norm=norm, seed=1
    )
    total, per_layer = costs(model)
    first, second = (p.detach().double().numpy() for p in costs.positions)
    assert first.shape == (4, 2) and second.shape == (6, 2)
    weight = model[2].weight.detach().double().numpy()
    # the first layer's inputs (pixels) have no place: proximity only
    expected_first = 0.3 * proximity_reference(first)
    expected_second = 0.3 * proximity_reference(second) + 1.7 * transport_reference(
        second, first, weight, norm
    )
    assert per_layer["0"].item() == pytest.approx(expected_first, rel=1e-5)
    assert per_layer["2"].item() == pytest.approx(expected_second, rel=1e-5)
    assert total.item() == pytest.approx(0.5 * expected_first + 2.0 * expected_second, rel=1e-5)


def test_a_layer_whose_inputs_are_not_the_previous_layers_channels_has_no_transport():
    model = trunk()  # layer "4" takes 5 channels; "2" gives 6
    costs = ChannelSpatialCosts({"2": 1.0, "4": 1.0}, proximity=1.0, transport=100.0)
    _, per_layer = costs(model)
    assert costs.feeds == [None, None]
    last = costs.positions[1].detach().double().numpy()
    assert per_layer["4"].item() == pytest.approx(proximity_reference(last), rel=1e-5)


def test_positions_and_weights_both_get_gradients_and_positions_are_seeded():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 6, 3))
    costs = ChannelSpatialCosts({"0": 1.0, "2": 1.0}, seed=3)
    costs(model)[0].backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in costs.positions)
    assert model[2].weight.grad.abs().sum() > 0
    again = ChannelSpatialCosts({"0": 1.0, "2": 1.0}, seed=3)
    again.check(model)
    for a, b in zip(costs.positions, again.positions, strict=True):
        torch.testing.assert_close(a, b)
    positions = costs.channel_positions(model)
    assert set(positions) == {"0", "2"} and positions["2"].shape == (6, 2)


def test_the_state_restores_learned_positions_into_a_fresh_regulariser():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 6, 3))
    costs = ChannelSpatialCosts({"0": 1.0, "2": 1.0})
    costs.check(model)
    with torch.no_grad():
        costs.positions[1].add_(5.0)
    fresh = ChannelSpatialCosts({"0": 1.0, "2": 1.0})
    fresh.load_state_dict(costs.state_dict())  # before it has seen the model
    for a, b in zip(costs.positions, fresh.positions, strict=True):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(fresh(model)[0], costs(model)[0])


def test_bad_input_is_refused_with_the_layer_and_the_numbers():
    model = trunk()
    with pytest.raises(TopoError, match="conv9"):
        ChannelSpatialCosts({"conv9": 1.0}).check(model)
    with pytest.raises(TopoError, match="Linear or Conv2d"):
        ChannelSpatialCosts({"1": 1.0}).check(model)
    costs = ChannelSpatialCosts({"2": 1.0})
    costs.check(model)
    other = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 7, 3))
    with pytest.raises(TopoError, match="6 channels") as error:
        costs.check(other)
    assert "7 channels" in str(error.value)
    with pytest.raises(TopoError, match="norm"):
        ChannelSpatialCosts({"2": 1.0}, norm="l3")
    with pytest.raises(TopoError, match="proximity"):
        ChannelSpatialCosts({"2": 1.0}, proximity=-1.0)
