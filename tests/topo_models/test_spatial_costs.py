"""Proximity and transport costs against numpy loops; the loss objects' fused kernels (the one
fast path) against autograd of the plain definitions: values, gradients, layer selection, NaN."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from topo_models import TopoError
from topo_models.losses import (
    ProximityCost,
    SpatialCosts,
    TransportCost,
    proximity_cost,
    transport_cost,
)
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
    plan = ProximityPlan.build(sizes, EPS, torch.device("cpu"), torch.float64)
    assert torch.autograd.gradcheck(lambda *p: FusedProximity.apply(plan, *p), positions)
    shapes = [(70, 3), (9, 70, 3, 3)]
    for norm in ("l1", "l2"):
        plan = TransportPlan.build(
            sizes, [1, 2], [0, 1], shapes, EPS, norm, torch.device("cpu"), torch.float64
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


def _plain_total(model, alpha: float, beta: float, norm: str, where=None) -> torch.Tensor:
    """α · mean P + β · mean T from the plain definitions, in float64."""
    layers = model.spatial_layers()
    names = list(layers) if where is None else where
    proximity = [proximity_cost(layers[n].positions.double()) for n in names]
    transport = [
        transport_cost(
            layers[n].positions.double(),
            layers[model.predecessor(n)].positions.double(),
            layers[n].weight.double(),
            norm,
        )
        for n in names
        if model.predecessor(n) is not None
    ]
    total = torch.zeros((), dtype=torch.float64)
    if alpha:
        total = total + alpha * torch.stack(proximity).mean()
    if beta and transport:
        total = total + beta * torch.stack(transport).mean()
    return total


def _grads(model, total: torch.Tensor) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    total.backward()
    return {n: p.grad.double() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("norm", ["l1", "l2"])
@pytest.mark.parametrize(
    "model",
    [
        SpatialMLP(input_shape=(1, 4, 4), widths=(9, 70, 3), labels=4, seed=1),  # dim 2
        SpatialMLP(input_shape=(1, 4, 4), widths=(9, 40), labels=4, dim=3, seed=1),
        SpatialMLP(input_shape=(1, 4, 4), widths=(7, 5), labels=2, dim=1, seed=1),
        SpatialCNN(channels=(3, 6), labels=4, seed=1),  # kernels (N, M, kh, kw)
    ],
    ids=["mlp-dim2", "mlp-dim3", "mlp-dim1", "cnn"],
)
def test_spatial_costs_in_float32_match_the_definitions_with_gradients(model, norm):
    """Values, per-layer values and gradients of positions and weights (float32 fused kernels)
    against float64 autograd of the plain functions, with an upstream gradient other than 1."""
    costs = SpatialCosts(proximity=3.0, transport=0.7, norm=norm)
    total, values = costs(model)
    assert total.dtype == torch.float32 and total.grad_fn is not None
    expected = _plain_total(model, 3.0, 0.7, norm)
    torch.testing.assert_close(total.double(), expected, rtol=1e-6, atol=1e-8)
    fused, plain = _grads(model, -2.5 * total), _grads(model, -2.5 * expected)
    assert fused.keys() == plain.keys()
    assert any(n.endswith("positions") for n in fused) and any("weight" in n for n in fused)
    for name, grad in plain.items():
        torch.testing.assert_close(fused[name], grad, rtol=1e-5, atol=1e-7, msg=name)
    layers = model.spatial_layers()
    for name, layer in layers.items():
        assert values[f"proximity/{name}"].item() == pytest.approx(
            proximity_cost(layer.positions.double()).item(), rel=1e-6
        )
        previous = model.predecessor(name)
        if previous is not None:
            assert values[f"transport/{name}"].item() == pytest.approx(
                transport_cost(
                    layer.positions.double(),
                    layers[previous].positions.double(),
                    layer.weight.double(),
                    norm,
                ).item(),
                rel=1e-6,
            )
    assert all(not value.requires_grad for value in values.values())


def test_spatial_costs_cover_far_and_coincident_neurons():
    """Distances from 0 (coincident: sqrt(eps)) to beyond the clamp at 80, against the
    definition; coincident neurons get exactly the definition's zero pull from each other."""
    model = SpatialMLP(input_shape=(1, 2, 2), widths=(6,), labels=2, n_tasks=1, seed=0)
    with torch.no_grad():
        model.hidden1.positions.copy_(
            torch.tensor([[0.0, 0.0], [0.0, 0.0], [0.3, -0.2], [5.0, 1.0], [-20.0, 3.0], [90, 9]])
        )
        model.output.positions.mul_(40.0)
    total, _ = SpatialCosts(proximity=1.0, transport=1.0, norm="l2")(model)
    expected = _plain_total(model, 1.0, 1.0, "l2")
    torch.testing.assert_close(total.double(), expected, rtol=1e-6, atol=1e-8)
    fused, plain = _grads(model, total), _grads(model, expected)
    for name, grad in plain.items():
        torch.testing.assert_close(fused[name], grad, rtol=1e-5, atol=1e-8, msg=name)


@pytest.mark.parametrize(
    ("alpha", "beta", "where"),
    [(3.0, 0.0, None), (0.0, 1.0, None), (2.0, 1.0, ["hidden3", "hidden1"])],
)
def test_spatial_costs_skip_a_zero_strength_and_follow_where(alpha, beta, where):
    model = SpatialMLP(input_shape=(1, 3, 3), widths=(5, 8, 6), labels=2, seed=3)
    total, values = SpatialCosts(alpha, beta, where=where, norm="l1")(model)
    expected = _plain_total(model, alpha, beta, "l1", where)
    torch.testing.assert_close(total.double(), expected, rtol=1e-6, atol=1e-8)
    assert ("proximity" in values) == (alpha > 0) and ("transport" in values) == (beta > 0)
    if where is not None:
        assert set(values) == {
            "proximity",
            "proximity/hidden3",
            "proximity/hidden1",
            "transport",
            "transport/hidden3",
        }
    fused, plain = _grads(model, total), _grads(model, expected)
    assert fused.keys() == plain.keys()  # no zero gradient for an uncovered parameter
    for name, grad in plain.items():
        torch.testing.assert_close(fused[name], grad, rtol=1e-5, atol=1e-7, msg=name)


def test_a_nan_position_propagates_as_in_the_definitions():
    """No fast-math assumption: a NaN reaches the total, its own layer's costs and the
    gradients the definition sends it to, and no other layer's value."""
    model = SpatialMLP(input_shape=(1, 3, 3), widths=(70, 8, 12), labels=2, seed=3)
    with torch.no_grad():
        model.hidden2.positions[3, 0] = float("nan")
    total, values = SpatialCosts(3.0, 1.0, norm="l1")(model)
    assert torch.isnan(total)
    layers = model.spatial_layers()
    for name, layer in layers.items():
        plain = proximity_cost(layer.positions)
        assert torch.isnan(values[f"proximity/{name}"]) == torch.isnan(plain), name
        previous = model.predecessor(name)
        if previous is not None:
            plain = transport_cost(layer.positions, layers[previous].positions, layer.weight, "l1")
            assert torch.isnan(values[f"transport/{name}"]) == torch.isnan(plain), name
    assert not torch.isnan(values["proximity/hidden1"]) and torch.isnan(values["transport/hidden3"])
    fused, plain = _grads(model, total), _grads(model, _plain_total(model, 3.0, 1.0, "l1"))
    for name, grad in plain.items():
        assert torch.equal(torch.isnan(fused[name]), torch.isnan(grad)), name
    assert torch.isnan(fused["hidden2.positions"]).any()


def test_float64_models_get_the_definitions_to_float64_rounding():
    model = SpatialMLP(widths=(16, 8), seed=2).double()
    total, _ = SpatialCosts(proximity=3.0, transport=1.0, norm="l1")(model)
    assert total.dtype == torch.float64
    torch.testing.assert_close(total, _plain_total(model, 3.0, 1.0, "l1"), rtol=1e-12, atol=0)
