"""The compiled C kernels of the spatial costs (per cost, and both in one call) against the plain
definitions and the fused torch kernels, and their fallback."""

from __future__ import annotations

import pytest
import torch

from topo_models.losses import (
    ProximityCost,
    SpatialCosts,
    TransportCost,
    native_costs,
    proximity_cost,
    transport_cost,
)
from topo_models.losses.native_costs import NativeProximity, NativeTransport, native_library
from topo_models.spatial import SpatialCNN, SpatialMLP


@pytest.fixture
def library(tmp_path, monkeypatch):
    """A fresh build into this test's cache directory."""
    monkeypatch.setenv("TOPO_CACHE_DIR", str(tmp_path))
    native_library.cache_clear()
    built = native_library()
    if built is None:
        pytest.skip("no C compiler on this machine: the torch kernels are used and tested")
    yield built
    native_library.cache_clear()


def test_the_library_is_built_once_into_the_cache(library, tmp_path):
    files = list((tmp_path / "native").glob("spatial_costs_*.so"))
    assert len(files) == 1
    native_library.cache_clear()
    assert native_library() is not None
    assert list((tmp_path / "native").glob("spatial_costs_*.so")) == files  # reused


@pytest.mark.parametrize("dim", [1, 2, 3])
def test_native_proximity_matches_the_definition_with_gradients(library, dim):
    generator = torch.Generator().manual_seed(dim)
    positions = [torch.randn(n, dim, generator=generator, requires_grad=True) for n in (7, 33, 2)]
    upstream = torch.tensor([0.3, -1.2, 2.0])
    values = NativeProximity.apply(1e-8, *positions)
    expected = torch.stack([proximity_cost(p.double()) for p in positions])
    torch.testing.assert_close(values.double(), expected, rtol=1e-5, atol=1e-7)
    native = torch.autograd.grad((values * upstream).sum(), positions)
    plain = torch.autograd.grad((expected * upstream.double()).sum(), positions)
    for a, b in zip(native, plain, strict=True):
        torch.testing.assert_close(a.double(), b.double(), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("norm", ["l1", "l2"])
@pytest.mark.parametrize("kernel", [None, (3, 3)])
def test_native_transport_matches_the_definition_with_gradients(library, norm, kernel):
    generator = torch.Generator().manual_seed(5)
    sizes, extra = (6, 9, 4), () if kernel is None else kernel
    positions = [torch.randn(n, 2, generator=generator, requires_grad=True) for n in sizes]
    weights = [
        torch.randn(9, 6, *extra, generator=generator, requires_grad=True),
        torch.randn(4, 9, *extra, generator=generator, requires_grad=True),
    ]
    values = NativeTransport.apply([1, 2], [0, 1], norm, 1e-8, 3, *positions, *weights)
    expected = torch.stack(
        [
            transport_cost(positions[1].double(), positions[0].double(), weights[0].double(), norm),
            transport_cost(positions[2].double(), positions[1].double(), weights[1].double(), norm),
        ]
    )
    torch.testing.assert_close(values.double(), expected, rtol=1e-5, atol=1e-7)
    upstream = torch.tensor([0.7, -2.0])
    inputs = [*positions, *weights]
    native = torch.autograd.grad((values * upstream).sum(), inputs)
    plain = torch.autograd.grad((expected * upstream.double()).sum(), inputs)
    for a, b in zip(native, plain, strict=True):
        torch.testing.assert_close(a.double(), b.double(), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("model", [SpatialMLP(widths=(16, 8), seed=2), SpatialCNN(seed=2)])
def test_loss_objects_give_the_same_numbers_with_and_without_the_c_kernels(
    library, model, monkeypatch
):
    def costs_and_grads():
        model.zero_grad(set_to_none=True)
        proximity, _ = ProximityCost()(model)
        transport, per_layer = TransportCost(norm="l1")(model)
        (3 * proximity + transport).backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        assert any(n.endswith("positions") for n in grads) and any("weight" in n for n in grads)
        return proximity, transport, grads

    native = costs_and_grads()
    monkeypatch.setenv("TOPO_NATIVE_COSTS", "0")
    native_library.cache_clear()
    assert native_library() is None
    fused = costs_and_grads()
    torch.testing.assert_close(native[0], fused[0], rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(native[1], fused[1], rtol=1e-5, atol=1e-7)
    for name, grad in native[2].items():
        torch.testing.assert_close(grad, fused[2][name], rtol=1e-4, atol=1e-6, msg=name)


def test_a_second_backward_through_the_same_forward_is_refused(library):
    positions = [torch.randn(5, 2, requires_grad=True)]
    values = NativeProximity.apply(1e-8, *positions)
    values.sum().backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="one backward per forward"):
        values.sum().backward()


def test_without_a_compiler_the_torch_kernels_are_used(monkeypatch, tmp_path):
    monkeypatch.setenv("TOPO_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
    monkeypatch.setattr(native_costs.shutil, "which", lambda name: None)
    native_library.cache_clear()
    try:
        assert native_library() is None  # the build fails, a warning is logged
        model = SpatialMLP(widths=(8,), seed=0)
        value, _ = ProximityCost()(model)
        expected = torch.stack(
            [proximity_cost(layer.positions) for layer in model.spatial_layers().values()]
        ).mean()
        torch.testing.assert_close(value, expected)
    finally:
        native_library.cache_clear()


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
        SpatialMLP(input_shape=(1, 4, 4), widths=(9, 40, 3), labels=4, seed=1),  # dim 2
        SpatialMLP(input_shape=(1, 4, 4), widths=(9, 40), labels=4, dim=3, seed=1),
        SpatialMLP(input_shape=(1, 4, 4), widths=(7, 5), labels=2, dim=1, seed=1),
        SpatialCNN(channels=(3, 6), labels=4, seed=1),  # kernels (N, M, kh, kw)
    ],
    ids=["mlp-dim2", "mlp-dim3", "mlp-dim1", "cnn"],
)
def test_one_call_costs_and_gradients_match_the_definitions(library, model, norm):
    """Values and gradients of positions and weights (float32 C) against float64 autograd of
    the plain functions, with an upstream gradient other than 1 (the scaled backward)."""
    costs = SpatialCosts(proximity=3.0, transport=0.7, norm=norm)
    total, values = costs(model)
    assert total.dtype == torch.float32 and total.grad_fn is not None
    expected = _plain_total(model, 3.0, 0.7, norm)
    torch.testing.assert_close(total.double(), expected, rtol=1e-5, atol=1e-7)
    native = _grads(model, -2.5 * total)
    plain = _grads(model, -2.5 * expected)
    assert native.keys() == plain.keys()
    assert any(n.endswith("positions") for n in native) and any("weight" in n for n in native)
    for name, grad in plain.items():
        torch.testing.assert_close(native[name], grad, rtol=1e-4, atol=1e-6, msg=name)
    layers = model.spatial_layers()
    for name, layer in layers.items():
        assert float(values[f"proximity/{name}"]) == pytest.approx(
            proximity_cost(layer.positions.double()).item(), rel=1e-5
        )
        previous = model.predecessor(name)
        if previous is not None:
            assert float(values[f"transport/{name}"]) == pytest.approx(
                transport_cost(
                    layer.positions.double(),
                    layers[previous].positions.double(),
                    layer.weight.double(),
                    norm,
                ).item(),
                rel=1e-5,
            )


def test_one_call_costs_cover_far_and_coincident_neurons(library):
    """Distances from 0 (coincident, sqrt(eps)) to beyond the clamp at 80: the inlined
    exponential against the definition."""
    model = SpatialMLP(input_shape=(1, 2, 2), widths=(6,), labels=2, n_tasks=1, seed=0)
    with torch.no_grad():
        model.hidden1.positions.copy_(
            torch.tensor([[0.0, 0.0], [0.0, 0.0], [0.3, -0.2], [5.0, 1.0], [-20.0, 3.0], [90, 9]])
        )
        model.output.positions.mul_(40.0)
    total, _ = SpatialCosts(proximity=1.0, transport=1.0, norm="l2")(model)
    expected = _plain_total(model, 1.0, 1.0, "l2")
    torch.testing.assert_close(total.double(), expected, rtol=1e-5, atol=1e-8)
    native = _grads(model, total)
    plain = _grads(model, expected)
    for name, grad in plain.items():
        torch.testing.assert_close(native[name], grad, rtol=1e-4, atol=1e-7, msg=name)


@pytest.mark.parametrize(
    ("alpha", "beta", "where"),
    [(3.0, 0.0, None), (0.0, 1.0, None), (2.0, 1.0, ["hidden3", "hidden1"])],
)
def test_one_call_costs_skip_a_zero_strength_and_follow_where(library, alpha, beta, where):
    model = SpatialMLP(input_shape=(1, 3, 3), widths=(5, 8, 6), labels=2, seed=3)
    total, values = SpatialCosts(alpha, beta, where=where, norm="l1")(model)
    expected = _plain_total(model, alpha, beta, "l1", where)
    torch.testing.assert_close(total.double(), expected, rtol=1e-5, atol=1e-7)
    assert ("proximity" in values) == (alpha > 0) and ("transport" in values) == (beta > 0)
    if where is not None:
        assert set(values) == {
            "proximity",
            "proximity/hidden3",
            "proximity/hidden1",
            "transport",
            "transport/hidden3",
        }
    native, plain = _grads(model, total), _grads(model, expected)
    assert native.keys() == plain.keys()  # no zero gradient for an uncovered parameter
    for name, grad in plain.items():
        torch.testing.assert_close(native[name], grad, rtol=1e-4, atol=1e-6, msg=name)


def test_one_call_costs_agree_with_the_torch_kernels_and_in_float64(library, monkeypatch):
    """TOPO_NATIVE_COSTS=0 and float64 models take ProximityCost + TransportCost instead."""
    costs = SpatialCosts(proximity=3.0, transport=1.0, norm="l1")
    double = SpatialMLP(widths=(16, 8), seed=2).double()
    total, _ = costs(double)
    assert total.dtype == torch.float64 and "NativeSpatialCosts" not in type(total.grad_fn).__name__
    torch.testing.assert_close(total, _plain_total(double, 3.0, 1.0, "l1"), rtol=1e-10, atol=0)
    model = SpatialMLP(widths=(16, 8), seed=2)
    native_total, native_values = costs(model)
    native = _grads(model, native_total)
    monkeypatch.setenv("TOPO_NATIVE_COSTS", "0")
    native_library.cache_clear()
    fallback = SpatialCosts(proximity=3.0, transport=1.0, norm="l1")
    torch_total, torch_values = fallback(model)
    torch.testing.assert_close(native_total, torch_total, rtol=1e-5, atol=1e-7)
    assert native_values.keys() == torch_values.keys()
    for key, value in native_values.items():
        assert value == pytest.approx(float(torch_values[key]), rel=1e-5), key
    assert "NativeSpatialCosts" not in type(torch_total.grad_fn).__name__
    for name, grad in _grads(model, torch_total).items():
        torch.testing.assert_close(native[name], grad, rtol=1e-4, atol=1e-6, msg=name)


def test_one_call_costs_refuse_a_second_backward(library):
    model = SpatialMLP(widths=(4,), seed=0)
    total, _ = SpatialCosts(1.0, 1.0)(model)
    total.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="one backward per forward"):
        total.backward()


def test_one_call_costs_give_the_same_numbers_for_the_same_seed(library):
    def run() -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        torch.manual_seed(4)  # the weights; the seed draws the positions
        model = SpatialMLP(widths=(32, 16), seed=4)
        total, _ = SpatialCosts(3.0, 1.0, norm="l1")(model)
        return total, _grads(model, total)

    (a, grads_a), (b, grads_b) = run(), run()
    assert torch.equal(a, b) and all(torch.equal(grads_a[n], grads_b[n]) for n in grads_a)


def test_one_call_costs_do_not_depend_on_the_number_of_threads(library):
    """Each layer is its own task, summed in layer order: 1 or 2 threads, the same bits."""
    torch.manual_seed(5)
    model = SpatialMLP(widths=(64, 32, 48), seed=5)
    threads = torch.get_num_threads()
    results = []
    try:
        for count in (1, 2):
            torch.set_num_threads(count)
            total, values = SpatialCosts(3.0, 1.0, norm="l1")(model)
            results.append((total.detach().clone(), values, _grads(model, total)))
    finally:
        torch.set_num_threads(threads)
    (a, values_a, grads_a), (b, values_b, grads_b) = results
    assert torch.equal(a, b) and values_a == values_b
    assert all(torch.equal(grads_a[n], grads_b[n]) for n in grads_a)


@pytest.mark.parametrize("norm", ["l1", "l2"])
def test_costs_into_grad_give_the_graph_costs_total_and_gradient_in_grad(library, norm):
    """SpatialCosts.into_grad: the same total as a call, as a float, and scale × the gradient
    in .grad at once — a new tensor where it was None, added where it was not — no graph."""
    model = SpatialCNN(channels=(3, 6), labels=4, seed=1)
    costs = SpatialCosts(proximity=3.0, transport=0.7, norm=norm)
    graph_total, graph_values = costs(model)
    expected = _grads(model, -2.5 * graph_total)
    model.zero_grad(set_to_none=True)
    existing = torch.randn(model.conv2.weight.shape)  # a gradient already there
    model.conv2.weight.grad = existing.clone()
    total, values = costs.into_grad(model, scale=lambda: -2.5)
    assert isinstance(total, float) and total == graph_total.item() and values == graph_values
    for name, parameter in model.named_parameters():
        if name not in expected:
            assert parameter.grad is None, name  # no zero gradient for an uncovered parameter
            continue
        want = expected[name] + existing.double() if name == "conv2.weight" else expected[name]
        torch.testing.assert_close(parameter.grad.double(), want, rtol=1e-5, atol=1e-7, msg=name)
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    costs.into_grad(model)  # a second call adds (the gradients of two calls, as autograd)
    for name, parameter in model.named_parameters():
        if name in grads and name != "conv2.weight":
            torch.testing.assert_close(parameter.grad, grads[name] * (1 - 1 / 2.5), msg=name)
    model.zero_grad(set_to_none=True)
    model.conv1.positions.requires_grad_(False)  # frozen: no gradient, as autograd gives none
    costs.into_grad(model)
    assert model.conv1.positions.grad is None and model.conv2.positions.grad is not None


def test_costs_into_grad_stay_in_the_graph_where_they_cannot_write_grad(library, monkeypatch):
    """No autograd, a wrapped (data-parallel) model, float64 or the torch kernels: the call's
    differentiable total (or a plain number without autograd), no .grad written."""
    model = SpatialMLP(widths=(16, 8), seed=2)
    costs = SpatialCosts(proximity=3.0, transport=1.0, norm="l1")
    reference = costs(model)[0].item()
    with torch.no_grad():
        total, _ = costs.into_grad(model)
    assert total.item() == reference and total.grad_fn is None
    total, _ = costs.into_grad(torch.nn.DataParallel(model))
    assert "NativeSpatialCosts" in type(total.grad_fn).__name__
    total, _ = costs.into_grad(SpatialMLP(widths=(16, 8), seed=2).double())
    assert total.dtype == torch.float64 and total.grad_fn is not None
    monkeypatch.setenv("TOPO_NATIVE_COSTS", "0")
    native_library.cache_clear()
    total, _ = SpatialCosts(proximity=3.0, transport=1.0, norm="l1").into_grad(model)
    assert total.grad_fn is not None and total.item() == pytest.approx(reference, rel=1e-5)
    assert all(p.grad is None for p in model.parameters())
