"""The spatial multi-task objective: cross entropy plus the costs, against the plain definitions."""

from __future__ import annotations

import pytest
import torch

from topo_models.losses import native_costs, proximity_cost, transport_cost
from topo_models.spatial import IGNORE_INDEX, SpatialMLP, multitask_cross_entropy
from topo_train.multitask_objective import MultiTaskObjective


def _batch(model: SpatialMLP, size: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(size, *model.input_shape, generator=generator)
    targets = torch.full((size, model.n_tasks), IGNORE_INDEX)
    targets[torch.arange(size), torch.arange(size) % model.n_tasks] = torch.randint(
        0, model.labels, (size,), generator=generator
    )
    return images, targets


def _plain_costs(model: SpatialMLP, alpha: float, beta: float, norm: str) -> torch.Tensor:
    layers = model.spatial_layers()
    proximity = torch.stack([proximity_cost(layer.positions) for layer in layers.values()])
    transport = torch.stack(
        [
            transport_cost(
                layer.positions, layers[model.predecessor(name)].positions, layer.weight, norm
            )
            for name, layer in layers.items()
            if model.predecessor(name) is not None
        ]
    )
    return alpha * proximity.mean() + beta * transport.mean()


@pytest.fixture(params=["c-kernels", "torch-kernels"])
def kernels(request, monkeypatch, tmp_path):
    """Both implementations a CPU run can take (TOPO_NATIVE_COSTS=0: the fallback)."""
    monkeypatch.setenv("TOPO_CACHE_DIR", str(tmp_path))
    if request.param == "torch-kernels":
        monkeypatch.setenv("TOPO_NATIVE_COSTS", "0")
    native_costs.native_library.cache_clear()
    yield request.param
    native_costs.native_library.cache_clear()


@pytest.mark.parametrize("norm", ["l1", "l2"])
def test_loss_is_cross_entropy_plus_the_weighted_costs_with_their_gradients(kernels, norm):
    torch.manual_seed(0)
    model = SpatialMLP(input_shape=(1, 4, 4), widths=(12, 9), labels=3, seed=1)
    objective = MultiTaskObjective(proximity=3.0, transport=0.5, norm=norm)
    batch = _batch(model)
    loss, metrics = objective(model, batch)
    logits, _ = model(batch[0])
    expected = multitask_cross_entropy(logits, batch[1]) + _plain_costs(model, 3.0, 0.5, norm)
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)
    model.zero_grad(set_to_none=True)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    expected.backward()
    for name, parameter in model.named_parameters():
        torch.testing.assert_close(grads[name], parameter.grad, rtol=1e-4, atol=1e-6, msg=name)
    assert {"loss/proximity", "loss/transport", "proximity/hidden1", "proximity/output"} <= set(
        metrics
    )
    assert "transport/hidden1" not in metrics and "transport/output" in metrics
    assert float(metrics["proximity/hidden2"]) == pytest.approx(
        proximity_cost(model.hidden2.positions).item(), rel=1e-5
    )
    assert all(not getattr(value, "requires_grad", False) for value in metrics.values())


def test_the_control_run_computes_no_cost(kernels):
    model = SpatialMLP(input_shape=(1, 4, 4), widths=(5,), labels=2, seed=1)
    objective = MultiTaskObjective(proximity=0.0, transport=0.0)
    total, metrics = objective.costs(model)
    assert total.item() == 0.0 and metrics == {}
    loss, _ = objective(model, _batch(model))
    loss.backward()
    assert all(layer.positions.grad is None for layer in model.spatial_layers().values())
