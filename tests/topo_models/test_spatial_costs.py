"""Proximity and transport costs against numpy loops; fused kernels against autograd."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from topo_models import TopoError
from topo_models.losses import ProximityCost, TransportCost, proximity_cost, transport_cost
from topo_models.losses.spatial_cost_kernels import (
    FusedProximity,
    FusedTransport,
    ProximityPlan,
    TransportPlan,
)
from topo_models.spatial import SpatialCNN, SpatialLinear, SpatialMLP, multitask_cross_entropy

EPS = 1e-8


def numpy_proximity(p: np.ndarray, eps: float = EPS) -> float:
    n = len(p)
    total = 0.0
    for i in range(n):
        for j in range(n):
            total += np.exp(-np.sqrt(np.sum((p[i] - p[j]) ** 2) + eps))
    return total / n**2


def numpy_transport(post: np.ndarray, pre: np.ndarray, w: np.ndarray, norm: str) -> float:
    total = 0.0
    for i in range(len(post)):
        for j in range(len(pre)):
            g = np.abs(w[i, j]) if norm == "l1" else w[i, j] ** 2
            total += np.sqrt(np.sum((post[i] - pre[j]) ** 2) + EPS) * np.sum(g)  # kernel sum
    return total / (len(post) * len(pre))


def as_np(t: torch.Tensor) -> np.ndarray:
    return t.detach().double().numpy()


def test_proximity_cost_is_the_mean_over_all_pairs_diagonal_included():
    p = torch.randn(17, 3, dtype=torch.float64)
    assert proximity_cost(p).item() == pytest.approx(numpy_proximity(p.numpy()), rel=1e-12)
    # Far-apart neurons leave only the diagonal: N terms exp(-sqrt(eps)) over N² pairs.
    far = torch.arange(4, dtype=torch.float64)[:, None] * torch.tensor([[1e3, 0.0]])
    assert proximity_cost(far).item() == pytest.approx(np.exp(-1e-4) / 4, rel=1e-12)
    assert proximity_cost(p, eps=0.5).item() == pytest.approx(
        numpy_proximity(p.numpy(), 0.5), rel=1e-12
    )


@pytest.mark.parametrize("norm", ["l1", "l2"])
def test_transport_cost_is_the_distance_weighted_weight_mean(norm):
    post, pre = torch.randn(6, 2, dtype=torch.float64), torch.randn(9, 2, dtype=torch.float64)
    w = torch.randn(6, 9, dtype=torch.float64)
    expected = numpy_transport(post.numpy(), pre.numpy(), w.numpy(), norm)
    assert transport_cost(post, pre, w, norm).item() == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("norm", ["l1", "l2"])
def test_convolution_transport_sums_g_over_the_kernel_per_channel_pair(norm):
    post, pre = torch.randn(4, 2, dtype=torch.float64), torch.randn(3, 2, dtype=torch.float64)
    w = torch.randn(4, 3, 3, 3, dtype=torch.float64)
    expected = numpy_transport(post.numpy(), pre.numpy(), w.numpy(), norm)
    assert transport_cost(post, pre, w, norm).item() == pytest.approx(expected, rel=1e-12)


def test_bad_shapes_and_norms_say_what_was_expected():
    post, pre = torch.randn(4, 2), torch.randn(3, 2)
    with pytest.raises(TopoError, match=r"expected: \(4, 3\)"):
        transport_cost(post, pre, torch.randn(3, 4))
    with pytest.raises(TopoError, match="dimension"):
        transport_cost(post, torch.randn(3, 5), torch.randn(4, 3))
    with pytest.raises(TopoError, match="norm"):
        transport_cost(post, pre, torch.randn(4, 3), norm="l3")
    with pytest.raises(TopoError, match=r"\(N, dim\)"):
        proximity_cost(torch.randn(5))
    with pytest.raises(TopoError, match="norm"):
        TransportCost(norm="L1")


def test_distances_have_finite_gradients_at_coincident_points():
    same = torch.ones(5, 2, dtype=torch.float64, requires_grad=True)
    proximity_cost(same).backward()
    assert torch.equal(same.grad, torch.zeros(5, 2, dtype=torch.float64))
    post = torch.zeros(3, 2, requires_grad=True)
    w = torch.randn(3, 3, requires_grad=True)
    transport_cost(post, torch.zeros(3, 2), w, "l2").backward()
    assert torch.isfinite(post.grad).all() and torch.isfinite(w.grad).all()
    # Transport weight gradient at r = sqrt(eps): 2 w sqrt(eps) / 9.
    torch.testing.assert_close(w.grad, 2 * w.detach() * 1e-4 / 9)


def mlp64(**kwargs) -> SpatialMLP:
    return SpatialMLP(input_shape=(1, 3, 3), **kwargs).double()


def test_proximity_loss_object_returns_each_layers_cost_and_their_mean():
    model = mlp64(widths=(70, 5, 130), labels=3)
    total, per_layer = ProximityCost()(model)
    assert list(per_layer) == ["hidden1", "hidden2", "hidden3", "output"]
    for name, value in per_layer.items():
        expected = numpy_proximity(as_np(getattr(model, name).positions))
        assert value.item() == pytest.approx(expected, rel=1e-10)
    assert total.item() == pytest.approx(np.mean([v.item() for v in per_layer.values()]))
    total, per_layer = ProximityCost(where=["hidden3", "hidden1"], eps=0.1)(model)
    assert list(per_layer) == ["hidden3", "hidden1"]
    assert per_layer["hidden3"].item() == pytest.approx(
        numpy_proximity(as_np(model.hidden3.positions), 0.1), rel=1e-10
    )


@pytest.mark.parametrize("norm", ["l1", "l2"])
def test_transport_loss_object_pairs_each_layer_with_its_predecessor(norm):
    model = mlp64(widths=(70, 5, 130), labels=3)
    total, per_layer = TransportCost(norm=norm)(model)
    assert list(per_layer) == ["hidden2", "hidden3", "output"]  # hidden1 has no predecessor
    for name in per_layer:
        previous = model.predecessor(name)
        expected = numpy_transport(
            as_np(getattr(model, name).positions),
            as_np(getattr(model, previous).positions),
            as_np(getattr(model, name).weight),
            norm,
        )
        assert per_layer[name].item() == pytest.approx(expected, rel=1e-10)
    assert total.item() == pytest.approx(np.mean([v.item() for v in per_layer.values()]))


def test_cnn_transport_uses_channel_positions_and_kernel_sums():
    model = SpatialCNN(channels=(3, 4), labels=2).double()
    _, per_layer = TransportCost(norm="l1")(model)
    assert list(per_layer) == ["conv2", "output"]
    conv2 = numpy_transport(
        as_np(model.conv2.positions), as_np(model.conv1.positions), as_np(model.conv2.weight), "l1"
    )
    output = numpy_transport(
        as_np(model.output.positions),
        as_np(model.conv2.positions),
        as_np(model.output.weight),
        "l1",
    )
    assert per_layer["conv2"].item() == pytest.approx(conv2, rel=1e-10)
    assert per_layer["output"].item() == pytest.approx(output, rel=1e-10)


def test_transport_without_a_predecessor_is_zero_and_backward_still_works():
    model = SpatialMLP()
    total, per_layer = TransportCost(where=["hidden1"])(model)
    assert per_layer == {} and total.item() == 0.0 and total.requires_grad
    logits, _ = model(torch.randn(2, 1, 28, 28))
    loss = multitask_cross_entropy(logits, torch.zeros(2, 2, dtype=torch.int64)) + total
    loss.backward()
    total.backward()
    assert model.hidden1.weight.grad is not None
    assert model.hidden1.positions.grad is None  # no zero gradient for AdamW to decay


def test_transport_touches_only_the_listed_layers_and_their_predecessors():
    model = mlp64(widths=(4, 5, 6), labels=2)
    total, per_layer = TransportCost(where=["hidden1", "hidden3"], norm="l1")(model)
    assert list(per_layer) == ["hidden3"] and total.item() == per_layer["hidden3"].item()
    total.backward()
    grads = {n for n, p in model.named_parameters() if p.grad is not None}
    assert grads == {"hidden3.positions", "hidden2.positions", "hidden3.weight"}


def test_where_errors_name_the_spatial_layers():
    model = SpatialMLP(widths=(4, 4))
    with pytest.raises(TopoError, match=r"hidden1.*hidden2.*output") as missing:
        ProximityCost(where=["hidden9"]).check(model)
    assert "found: hidden9" in str(missing.value)
    with pytest.raises(TopoError, match="not spatial") as relu:
        TransportCost(where=["act1"])(model)
    assert "act1 (Sigmoid)" in str(relu.value)
    with pytest.raises(TopoError, match="empty where"):
        ProximityCost(where=[])
    with pytest.raises(TopoError, match="no spatial layers"):
        ProximityCost()(nn.Sequential(nn.Linear(2, 2)))
    assert ProximityCost(where=["output"]).check(model) == ["output"]


def _autograd_reference(model: SpatialMLP, norm: str, weights: dict) -> torch.Tensor:
    layers = model.spatial_layers()
    total = 0.0
    for name, layer in layers.items():
        total = total + weights[name] * proximity_cost(layer.positions)
        previous = model.predecessor(name)
        if previous is not None:
            pre = layers[previous].positions
            total = total + 2 * weights[name] * transport_cost(
                layer.positions, pre, layer.weight, norm
            )
    return total


@pytest.mark.parametrize("norm", ["l1", "l2"])
def test_fused_gradients_reach_positions_and_weights_as_autograd_does(norm):
    torch.manual_seed(0)
    model = mlp64(widths=(70, 5, 130), labels=3)
    weights = {"hidden1": 0.3, "hidden2": -1.2, "hidden3": 0.7, "output": 2.0}
    total = 0.0
    _, prox = ProximityCost()(model)
    _, trans = TransportCost(norm=norm)(model)
    for name, w in weights.items():
        total = total + w * prox[name] + (2 * w * trans[name] if name in trans else 0.0)
    total.backward()
    fused = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    _autograd_reference(model, norm, weights).backward()
    reference = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert set(fused) == set(reference)
    assert {"hidden1.positions", "output.positions", "hidden2.weight", "output.weight"} <= set(
        fused
    )
    assert "hidden1.weight" not in fused  # the first layer has no transport term
    for name in reference:
        torch.testing.assert_close(fused[name], reference[name], rtol=1e-9, atol=1e-12)
        assert reference[name].abs().max() > 0


def test_fused_kernels_pass_gradcheck_in_double_precision():
    sizes = [3, 70, 9]  # a tiny layer (padded block), one wider than a 64-block, a small one
    positions = [torch.randn(n, 2, dtype=torch.float64, requires_grad=True) for n in sizes]
    plan = ProximityPlan.build(sizes, 2, EPS, torch.device("cpu"), torch.float64)
    assert torch.autograd.gradcheck(lambda *p: FusedProximity.apply(plan, *p), positions)
    shapes = [(70, 3), (9, 70, 3, 3)]
    for norm in ("l1", "l2"):
        plan = TransportPlan.build(
            sizes, [1, 2], [0, 1], shapes, 2, EPS, norm, torch.device("cpu"), torch.float64
        )
        weights = [torch.randn(*s, dtype=torch.float64, requires_grad=True) for s in shapes]
        assert torch.autograd.gradcheck(
            lambda *t, plan=plan: FusedTransport.apply(plan, 3, *t), (*positions, *weights)
        )


def test_float32_costs_match_the_numpy_definitions():
    model = SpatialMLP()
    _, prox = ProximityCost()(model)
    _, trans = TransportCost(norm="l1")(model)
    assert prox["hidden4"].item() == pytest.approx(
        numpy_proximity(as_np(model.hidden4.positions)), rel=1e-5
    )
    expected = numpy_transport(
        as_np(model.hidden4.positions),
        as_np(model.hidden3.positions),
        as_np(model.hidden4.weight),
        "l1",
    )
    assert trans["hidden4"].item() == pytest.approx(expected, rel=1e-5)


def test_wrapped_and_generic_models_use_the_previous_spatial_module():
    torch.manual_seed(0)
    generic = nn.Sequential(SpatialLinear(4, 6), nn.ReLU(), SpatialLinear(6, 5)).double()
    total, per_layer = TransportCost(norm="l2")(nn.DataParallel(generic))
    expected = numpy_transport(
        as_np(generic[2].positions), as_np(generic[0].positions), as_np(generic[2].weight), "l2"
    )
    assert list(per_layer) == ["2"] and per_layer["2"].item() == pytest.approx(expected)
    _, prox = ProximityCost()(nn.DataParallel(generic))
    assert list(prox) == ["0", "2"]
