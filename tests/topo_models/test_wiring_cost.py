"""ITN's wiring cost against numpy loops and a hand-worked example; its gradient against the
derivative of the formula; the conv reduction; the WiringCost object on trunks; bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from topo_models import TopoError, create_model
from topo_models.losses.wiring_cost import (
    VARIANTS,
    WiringCost,
    unit_sheet,
    unit_sheet_positions,
    wiring_cost,
)


def numpy_wiring_cost(w: np.ndarray, post: np.ndarray, pre: np.ndarray, p, q, variant) -> float:
    """Explicit double sum over (post i, pre j); a conv weight's pair strength is its kernel's
    L2 norm, summed entry by entry."""
    weighted, total_a = 0.0, 0.0
    for i in range(len(post)):
        for j in range(len(pre)):
            strength = math.sqrt(sum(float(x) ** 2 for x in np.ravel(w[i, j])))
            a = strength**p
            d = math.hypot(*(post[i] - pre[j]))
            total_a += a
            weighted += a * d**q / (1 + a) if variant == "jj" else a * d**q
    if variant == "norm":
        return weighted / total_a if total_a > 0 else 0.0
    return weighted


def tiny_layer(seed: int, shape: tuple[int, ...]) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(shape, generator=g, dtype=torch.float64)
    post = torch.rand(shape[0], 2, generator=g, dtype=torch.float64) * 3
    pre = torch.rand(shape[1], 2, generator=g, dtype=torch.float64) * 3
    return w, post, pre


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("p, q", [(2, 2), (1, 1), (3, 0.5), (0.5, 3)])
def test_wiring_cost_equals_the_explicit_double_sum(variant, p, q):
    w, post, pre = tiny_layer(0, (3, 4))
    expected = numpy_wiring_cost(w.numpy(), post.numpy(), pre.numpy(), p, q, variant)
    found = wiring_cost(w, post, pre, p=p, q=q, variant=variant).item()
    assert found == pytest.approx(expected, rel=1e-12)


def test_hand_worked_two_by_two_example():
    # post at (0,0), (1,0); pre at (0,0), (0,1): d = [[0, 1], [1, sqrt 2]]
    w = torch.tensor([[1.0, 2.0], [-1.0, 0.0]], dtype=torch.float64)
    post = torch.tensor([[0.0, 0.0], [1.0, 0.0]], dtype=torch.float64)
    pre = torch.tensor([[0.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    # |w|² = [[1, 4], [1, 0]], d² = [[0, 1], [1, 2]]
    # jj:   1·0/2 + 4·1/5 + 1·1/2 + 0 = 0.8 + 0.5 = 1.3
    # dot:  0 + 4 + 1 + 0 = 5;  norm: 5 / (1 + 4 + 1 + 0) = 5/6
    assert wiring_cost(w, post, pre).item() == pytest.approx(1.3, rel=1e-12)
    assert wiring_cost(w, post, pre, variant="dot").item() == pytest.approx(5.0, rel=1e-12)
    assert wiring_cost(w, post, pre, variant="norm").item() == pytest.approx(5 / 6, rel=1e-12)
    # p = q = 1: jj = 2·1/3 + 1·1/2 = 7/6
    assert wiring_cost(w, post, pre, p=1, q=1).item() == pytest.approx(7 / 6, rel=1e-12)


def test_norm_variant_ignores_a_uniform_scale_of_the_weights_and_dot_scales_with_it():
    w, post, pre = tiny_layer(1, (5, 6))
    norm = wiring_cost(w, post, pre, variant="norm")
    dot = wiring_cost(w, post, pre, variant="dot")
    assert wiring_cost(10 * w, post, pre, variant="norm").item() == pytest.approx(norm.item())
    assert wiring_cost(10 * w, post, pre, variant="dot").item() == pytest.approx(100 * dot.item())


def test_jj_cost_of_a_connection_saturates_at_its_distance_to_the_q():
    post = torch.tensor([[0.0, 0.0]], dtype=torch.float64)
    pre = torch.tensor([[3.0, 4.0]], dtype=torch.float64)  # d = 5
    huge = torch.tensor([[1e6]], dtype=torch.float64)
    assert wiring_cost(huge, post, pre, q=2).item() == pytest.approx(25.0, rel=1e-9)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("p", [0.5, 1, 2, 3])
@pytest.mark.parametrize("shape", [(3, 4), (3, 4, 3, 3)])
def test_zero_weights_cost_nothing_with_a_zero_finite_gradient(variant, p, shape):
    w = torch.zeros(shape, dtype=torch.float64, requires_grad=True)
    _, post, pre = tiny_layer(2, shape)
    cost = wiring_cost(w, post, pre, p=p, variant=variant)
    cost.backward()
    assert cost.item() == 0.0
    assert torch.equal(w.grad, torch.zeros_like(w))


@pytest.mark.parametrize("p, q", [(2, 2), (3, 1.5), (1, 2), (0.5, 1)])
def test_gradient_of_one_entry_is_the_derivative_of_the_formula(p, q):
    w, post, pre = tiny_layer(3, (3, 4))
    w[1, 2] = -0.7  # a negative entry: the derivative carries sign(w)
    w.requires_grad_(True)
    i, j = 1, 2
    x = abs(w[i, j].item())
    sign = -1.0
    d_q = math.dist(post[i].tolist(), pre[j].tolist()) ** q
    da = p * x ** (p - 1) * sign  # d|w|^p / dw

    jj = wiring_cost(w, post, pre, p=p, q=q)
    (grad,) = torch.autograd.grad(jj, w)
    assert grad[i, j].item() == pytest.approx(d_q * da / (1 + x**p) ** 2, rel=1e-10)

    dot = wiring_cost(w, post, pre, p=p, q=q, variant="dot")
    (grad,) = torch.autograd.grad(dot, w)
    assert grad[i, j].item() == pytest.approx(d_q * da, rel=1e-10)

    # norm = N / S, N = Σ a d^q, S = Σ a  →  ∂/∂w_ij = da (d_ij^q S − N) / S²
    a = w.detach().abs() ** p
    d = torch.cdist(post, pre) ** q
    total, weighted = a.sum().item(), (a * d).sum().item()
    norm = wiring_cost(w, post, pre, p=p, q=q, variant="norm")
    (grad,) = torch.autograd.grad(norm, w)
    expected = da * (d_q * total - weighted) / total**2
    assert grad[i, j].item() == pytest.approx(expected, rel=1e-10)


def test_positions_get_no_gradient():
    w, post, pre = tiny_layer(4, (3, 4))
    w.requires_grad_(True)
    post.requires_grad_(True)
    pre.requires_grad_(True)
    wiring_cost(w, post, pre).backward()
    assert post.grad is None and pre.grad is None and w.grad is not None


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("p", [2, 1, 3])
def test_conv_weight_is_one_connection_per_channel_pair_of_kernel_l2_norm(variant, p):
    w, post, pre = tiny_layer(5, (3, 4, 3, 2))
    expected = numpy_wiring_cost(w.numpy(), post.numpy(), pre.numpy(), p, 2, variant)
    assert wiring_cost(w, post, pre, p=p, variant=variant).item() == pytest.approx(expected)
    # the same as a Linear weight holding each kernel's L2 norm
    reduced = w.square().sum((2, 3)).sqrt()
    linear = wiring_cost(reduced, post, pre, p=p, variant=variant).item()
    assert wiring_cost(w, post, pre, p=p, variant=variant).item() == pytest.approx(linear)


def test_conv_dot_cost_at_p_2_sums_the_squared_kernel_entries():
    w, post, pre = tiny_layer(6, (2, 3, 3, 3))
    d2 = torch.cdist(post, pre).square()
    expected = (w.square() * d2[:, :, None, None]).sum().item()
    assert wiring_cost(w, post, pre, variant="dot").item() == pytest.approx(expected)


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3)
        self.conv2 = nn.Conv2d(4, 5, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(5, 2)
        self.norm = nn.BatchNorm2d(4)


def test_wiring_cost_module_is_the_weighted_sum_of_each_layers_cost():
    torch.manual_seed(0)
    model = Tiny()
    g = np.random.default_rng(0)
    positions = {
        "conv1": (g.uniform(size=(4, 2)), g.uniform(size=(3, 2))),
        "conv2": (torch.rand(5, 2), torch.rand(4, 2)),
        "fc": (g.uniform(size=(2, 2)), g.uniform(size=(5, 2))),
    }
    weights = {"conv1": 0.5, "conv2": 2.0, "fc": 0.0}
    for variant in VARIANTS:
        cost = WiringCost(positions, weights, p=3, q=1, variant=variant)
        total, per_layer = cost(model)
        expected = {
            name: wiring_cost(
                model.get_submodule(name).weight,
                torch.as_tensor(post, dtype=torch.float32),
                torch.as_tensor(pre, dtype=torch.float32),
                p=3,
                q=1,
                variant=variant,
            ).item()
            for name, (post, pre) in positions.items()
        }
        assert list(per_layer) == ["conv1", "conv2", "fc"]
        for name, value in per_layer.items():
            assert not value.requires_grad
            assert value.item() == pytest.approx(expected[name], rel=1e-5)
        assert total.item() == pytest.approx(
            sum(weights[n] * expected[n] for n in weights), rel=1e-5
        )
    model.zero_grad()
    total.backward()
    assert model.conv1.weight.grad.abs().sum() > 0
    assert model.conv2.weight.grad.abs().sum() > 0
    assert torch.equal(model.fc.weight.grad, torch.zeros_like(model.fc.weight))  # weight 0
    assert not any(buffer.requires_grad for buffer in cost.buffers())
    assert cost.state_dict() == {}  # positions are the loss's, not the model's checkpoint


def test_wiring_cost_module_sees_through_data_parallel():
    model = Tiny()
    cost = WiringCost(unit_sheet_positions(model, ["conv2"]), {"conv2": 1.0})
    assert cost(nn.DataParallel(model))[0].item() == pytest.approx(cost(model)[0].item())


def test_unit_sheet_is_seeded_and_gives_a_layers_input_its_producers_output_places():
    sheet = unit_sheet(64, seed=3)
    assert sheet.shape == (64, 2) and sheet.min() >= 0 and sheet.max() <= 1
    assert np.array_equal(sheet, unit_sheet(64, seed=3))
    assert not np.array_equal(sheet, unit_sheet(64, seed=4))
    model = create_model("resnet18_spatial", head="classifier", num_classes=10)
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    positions = unit_sheet_positions(model, convs, seed=3)
    post, pre = positions["layer1.0.conv2"]
    assert post.shape == (64, 2) and pre.shape == (64, 2)
    assert np.array_equal(positions["layer1.0.conv1"][0], pre)  # conv1 feeds conv2
    assert np.array_equal(positions["layer2.0.conv1"][0], positions["layer2.0.conv2"][1])
    assert positions["layer3.0.conv1"][1].shape == (128, 2)
    cost = WiringCost(positions, dict.fromkeys(convs, 1.0))
    total, per_layer = cost(model)
    total.backward()
    assert math.isfinite(total.item()) and set(per_layer) == set(convs)
    assert all(model.get_submodule(n).weight.grad is not None for n in convs)


# --- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "field, value", [("p", 0), ("p", -1), ("p", math.nan), ("q", 0), ("q", -2.5), ("q", math.inf)]
)
def test_non_positive_exponents_are_refused(field, value):
    w, post, pre = tiny_layer(7, (2, 3))
    with pytest.raises(TopoError, match=rf"field: {field}\n  expected: > 0(.|\n)*found: {value}"):
        wiring_cost(w, post, pre, **{field: value})
    with pytest.raises(TopoError, match=rf"field: {field}\n  expected: > 0(.|\n)*found: {value}"):
        WiringCost({"fc": (post, pre)}, {"fc": 1.0}, **{field: value})


def test_an_unknown_variant_is_refused():
    w, post, pre = tiny_layer(7, (2, 3))
    with pytest.raises(TopoError, match="variant"):
        wiring_cost(w, post, pre, variant="jju")


def test_a_layer_the_model_lacks_is_named():
    cost = WiringCost({"conv3": (np.zeros((4, 2)), np.zeros((3, 2)))}, {"conv3": 1.0})
    with pytest.raises(TopoError, match=r"does not have(.|\n)*'conv1'(.|\n)*found: conv3"):
        cost(Tiny())
    with pytest.raises(TopoError, match="found: conv3"):
        unit_sheet_positions(Tiny(), ["conv3"])


def test_a_layer_that_is_not_linear_or_conv_is_refused():
    cost = WiringCost({"norm": (np.zeros((4, 2)), np.zeros((4, 2)))}, {"norm": 1.0})
    with pytest.raises(TopoError, match=r"Linear or Conv2d(.|\n)*found: norm \(BatchNorm2d\)"):
        cost(Tiny())


def test_grouped_convolutions_are_refused():
    model = nn.Sequential(nn.Conv2d(4, 4, 3, groups=2))
    cost = WiringCost({"0": (np.zeros((4, 2)), np.zeros((4, 2)))}, {"0": 1.0})
    with pytest.raises(TopoError, match=r"grouped(.|\n)*0.groups(.|\n)*found: 2"):
        cost(model)


@pytest.mark.parametrize(
    "post, pre, side, expected, found",
    [(5, 3, "post", 4, 5), (4, 2, "pre", 3, 2)],
)
def test_positions_of_the_wrong_count_say_expected_and_found(post, pre, side, expected, found):
    cost = WiringCost({"conv1": (np.zeros((post, 2)), np.zeros((pre, 2)))}, {"conv1": 1.0})
    pattern = rf"field: {{}}(.|\n)*expected: {expected} positions(.|\n)*found: {found} positions"
    with pytest.raises(TopoError, match=pattern.format(rf"positions.conv1 \({side}\)")):
        cost(Tiny())
    w = torch.zeros(4, 3, 3, 3)
    with pytest.raises(TopoError, match=pattern.format(f"{side}_positions")):
        wiring_cost(w, torch.zeros(post, 2), torch.zeros(pre, 2))


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_positions_are_refused(bad):
    post, pre = np.zeros((4, 2)), np.zeros((3, 2))
    pre[2, 1] = bad
    with pytest.raises(TopoError, match=r"positions.conv1 \(pre\)(.|\n)*1 row\(s\)(.|\n)*row 2"):
        WiringCost({"conv1": (post, pre)}, {"conv1": 1.0})
    with pytest.raises(TopoError, match=r"finite(.|\n)*field: pre_positions"):
        wiring_cost(torch.zeros(4, 3), torch.as_tensor(post), torch.as_tensor(pre))


def test_bad_layer_weights_and_missing_positions_are_refused():
    positions = {"fc": (np.zeros((2, 2)), np.zeros((5, 2)))}
    with pytest.raises(TopoError, match="layer_weights.fc"):
        WiringCost(positions, {"fc": -1.0})
    with pytest.raises(TopoError, match=r"no positions(.|\n)*found: conv1"):
        WiringCost(positions, {"conv1": 1.0})
    with pytest.raises(TopoError, match="at least one layer"):
        WiringCost(positions, {})
