"""The compiled C kernels of the spatial costs against the plain definitions and the fused
torch kernels, and their fallback."""

from __future__ import annotations

import pytest
import torch

from topo_models.losses import (
    ProximityCost,
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
