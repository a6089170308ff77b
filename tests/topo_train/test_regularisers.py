"""``loss.regularisers``: weight regularisers added to any objective's loss, logged by name."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from tests.conftest import tiny_overrides
from topo_models import TopoError
from topo_models.losses import (
    ChannelSpatialCosts,
    NeighbourCosineLoss,
    TopoLoss,
    WiringCost,
    laplacian_pyramid_loss,
    wiring_cost,
)
from topo_models.losses.wiring_cost import unit_sheet_positions
from topo_models.trained import load_trained_model
from topo_train.contracts import Regulariser
from topo_train.objectives.base import BaseObjective
from topo_train.train import train
from topo_train.trainer import Trainer


class MeanSquare(BaseObjective):
    """A stand-in task: the mean square of the model's output."""

    def forward(self, model: nn.Module, batch: torch.Tensor):
        loss = model(batch).square().mean()
        return loss, {"loss/task": loss.detach(), "loss/total": loss.detach()}


def mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 6))


@pytest.mark.parametrize(
    "regulariser", [TopoLoss, WiringCost, NeighbourCosineLoss, ChannelSpatialCosts]
)
def test_each_weight_regulariser_meets_the_contract(regulariser):
    """Modules (they follow the objective to the run's device) with ``__call__`` and ``check``."""
    members = [name for name in ("__call__", "check") if name in dir(Regulariser)]
    assert members == ["__call__", "check"]
    assert all(callable(getattr(regulariser, name, None)) for name in members)
    assert issubclass(regulariser, nn.Module)


def test_regularisers_add_to_the_task_loss_and_are_logged_by_name_and_layer():
    model, batch = mlp(), torch.randn(8, 4)
    objective = MeanSquare(
        [TopoLoss({"0": 0.5}, factor_h=2, factor_w=2), WiringCost(layer_weights={"2": 0.1})]
    )
    objective.check_model(model)
    loss, metrics = objective(model, batch)

    task = model(batch).square().mean()
    post, pre = unit_sheet_positions(model, ["2"])["2"]
    topo = laplacian_pyramid_loss(model[0].weight, 2, 2)
    wiring = wiring_cost(model[2].weight, torch.tensor(post).float(), torch.tensor(pre).float())
    expected = task + 0.5 * topo + 0.1 * wiring
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(metrics["loss/total"], expected.detach())
    torch.testing.assert_close(metrics["loss/task"], task.detach())
    torch.testing.assert_close(metrics["loss/topo_loss"], 0.5 * topo.detach())
    torch.testing.assert_close(metrics["topo_loss/0"], topo.detach())
    torch.testing.assert_close(metrics["wiring_cost/2"], wiring.detach().float())

    loss.backward()  # the regularisers' gradients reach the weights they act on
    alone = mlp()
    alone[0].weight.grad = None
    (alone(batch).square().mean()).backward()
    assert not torch.allclose(model[0].weight.grad, alone[0].weight.grad)


def test_two_regularisers_of_one_kind_get_numbered_names():
    objective = MeanSquare(
        [TopoLoss({"0": 1.0}, factor_h=2, factor_w=2), TopoLoss({"0": 2.0}, 4, 4)]
    )
    _, metrics = objective(mlp(), torch.randn(3, 4))
    assert {"loss/topo_loss_0", "loss/topo_loss_1"} <= set(metrics)


def test_a_regulariser_naming_a_missing_layer_is_refused_before_any_step():
    objective = MeanSquare([WiringCost(layer_weights={"hidden": 1.0})])
    with pytest.raises(TopoError, match="hidden"):
        objective.check_model(mlp())


def test_without_regularisers_the_family_loss_is_unchanged():
    model, batch = mlp(), torch.randn(8, 4)
    loss, metrics = MeanSquare()(model, batch)
    torch.testing.assert_close(loss, model(batch).square().mean())
    assert set(metrics) == {"loss/task", "loss/total"}


def test_a_config_adds_a_regulariser_to_a_run_of_any_family(tmp_path, compose_train):
    """From the command line: TopoLoss on the spatial multi-task network's first layer."""
    cfg = compose_train(
        [
            "experiment=spatial_multitask",
            f"run_dir={tmp_path / 'run'}",
            "trainer.max_epochs=1",
            "model.widths=[32,32]",
            "trainer.progress=false",
            "tracking=none",
            "loss.regularisers=[{_target_: topo_models.losses.TopoLoss, "
            "layer_weights: {hidden1: 0.5}, factor_h: 2, factor_w: 2}]",
        ]
    )
    train(cfg)
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    logged = [line for line in lines if "loss/topo_loss" in line]
    assert logged and all(0 < line["topo_loss/hidden1"] <= 2 for line in logged)
    for line in logged:  # in loss/total beside the task and the (non-negative) spatial costs
        assert line["loss/total"] >= line["loss/task"] + line["loss/topo_loss"] - 1e-5


def test_the_loop_learns_channel_positions_on_a_conv_trunk_and_resumes_them_exactly(
    tmp_path, compose_train, monkeypatch
):
    """SpatialNetworks' costs on ResNet-18: the positions are the objective's parameters, so
    the optimiser moves them (without weight decay) and a killed run resumes them exactly."""
    method = ["experiment=regulariser_benchmark", "benchmark.method=spatial_costs"]
    straight = tmp_path / "straight"
    train(compose_train([*method, *tiny_overrides(tmp_path, "straight")]))
    original = Trainer.train_step

    def dies_at_step_three(self, batch):
        if self.step == 3:
            raise KeyboardInterrupt("killed")
        return original(self, batch)

    monkeypatch.setattr(Trainer, "train_step", dies_at_step_three)
    with pytest.raises(KeyboardInterrupt):
        train(compose_train([*method, *tiny_overrides(tmp_path, "killed")]))
    monkeypatch.setattr(Trainer, "train_step", original)
    train(compose_train([*method, *tiny_overrides(tmp_path, "killed")]))  # resumes at step 2

    state = torch.load(straight / "last.pt", weights_only=True)
    learned = {k: v for k, v in state["objective"].items() if ".positions." in k}
    assert len(learned) == 8  # one (channels, 2) parameter per block's conv2
    fresh = ChannelSpatialCosts(dict.fromkeys(["layer1.0.conv2"], 1.0), seed=0)
    fresh.check(load_trained_model(straight / "model.pt"))
    first = learned["regularisers.0.positions.0"]
    assert first.shape == (64, 2) and not torch.allclose(first, fresh.positions[0].detach())
    groups = state["optimizer"]["param_groups"]
    assert any(group["weight_decay"] == 0.0 and len(group["params"]) >= 8 for group in groups)
    resumed = torch.load(tmp_path / "killed" / "last.pt", weights_only=True)["objective"]
    assert all(torch.equal(learned[k], resumed[k]) for k in learned)
    a = torch.load(straight / "model.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "killed" / "model.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    logged = [json.loads(line) for line in (straight / "metrics.jsonl").open()]
    assert any("channel_spatial_costs/layer4_1_conv2" in line for line in logged)
