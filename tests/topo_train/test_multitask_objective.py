"""The spatial multi-task objective: cross entropy plus the costs, against the plain definitions."""

from __future__ import annotations

import pytest
import torch

from topo_models.losses import proximity_cost, transport_cost
from topo_models.spatial import IGNORE_INDEX, SpatialMLP, multitask_cross_entropy
from topo_train.objectives.multitask import MultiTaskObjective


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


@pytest.mark.parametrize("norm", ["l1", "l2"])
def test_loss_is_cross_entropy_plus_the_weighted_costs_with_their_gradients(norm):
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


def test_the_control_run_computes_no_cost():
    model = SpatialMLP(input_shape=(1, 4, 4), widths=(5,), labels=2, seed=1)
    objective = MultiTaskObjective(proximity=0.0, transport=0.0)
    total, metrics = objective.costs(model)
    assert total.item() == 0.0 and metrics == {}
    loss, _ = objective(model, _batch(model))
    loss.backward()
    assert all(layer.positions.grad is None for layer in model.spatial_layers().values())


def test_the_trainer_steps_to_the_weights_of_a_plain_autograd_loop(tmp_path):
    """The objective returns an ordinary autograd loss: three Trainer.train_step calls reach
    the same weights, bit for bit, as a plain loop that differentiates it."""
    from topo_train.runtime import DistributedContext
    from topo_train.settings import TrainerSettings
    from topo_train.tracking import NullTracker
    from topo_train.trainer import Trainer

    def fresh() -> tuple[SpatialMLP, torch.optim.Optimizer]:
        torch.manual_seed(0)
        model = SpatialMLP(input_shape=(1, 4, 4), widths=(12, 9), labels=3, seed=1)
        return model, torch.optim.Adam(model.parameters(), lr=0.05, fused=True)

    objective = MultiTaskObjective(proximity=3.0, transport=0.5, norm="l1")
    batches = [_batch(SpatialMLP(input_shape=(1, 4, 4), labels=3, seed=s)) for s in range(3)]
    plain_model, plain_optimizer = fresh()
    for batch in batches:
        plain_optimizer.zero_grad(set_to_none=True)
        objective(plain_model, batch)[0].backward()
        plain_optimizer.step()
    model, optimizer = fresh()
    trainer = Trainer(
        TrainerSettings(max_steps=3, progress=False, tune_allocator=False),
        model, objective, None, optimizer, torch.optim.lr_scheduler.ConstantLR(optimizer, 1.0),
        NullTracker(), tmp_path, torch.device("cpu"), DistributedContext(), checkpoint_extra=dict,
    )  # fmt: skip
    for batch in batches:
        trainer.train_step(batch)
    plain = dict(plain_model.named_parameters())
    for name, weight in model.named_parameters():
        assert torch.equal(weight, plain[name]), name
    assert not torch.equal(model.hidden1.positions, fresh()[0].hidden1.positions)  # it trained
