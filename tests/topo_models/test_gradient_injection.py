"""The spatial loss's injected gradients equal those of a plain (dense) gather."""

from __future__ import annotations

import gc
import weakref

import pytest
import torch
from torch import nn

import topo_models.losses.spatial_loss as spatial_loss_module
from topo_models import create_model
from topo_models.losses import SpatialCorrelationLoss
from topo_models.positions import UniformLayout


def parameter_grads(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def run(model, loss, images, scale: float, inject: bool, monkeypatch) -> dict[str, torch.Tensor]:
    if not inject:  # the reference: every layer through a plain, dense gather
        monkeypatch.setattr(
            spatial_loss_module, "injectable_layers", lambda layers: [False] * len(layers)
        )
    else:
        monkeypatch.undo()
    model.zero_grad()
    loss.generator.manual_seed(5)
    output, features = model(images)
    spatial, _ = loss(features)
    ((output.square().mean() + spatial) * scale).backward()
    return parameter_grads(model)


@pytest.mark.parametrize("scale", [1.0, 1024.0])  # 1024: a GradScaler-style upstream factor
def test_injected_gradients_equal_the_plain_gather(monkeypatch, scale):
    torch.manual_seed(0)
    model = create_model("resnet18_spatial").eval()  # eval: batch-norm statistics stay fixed
    positions = UniformLayout(n_neighborhoods=50, seed=1).build(model, 32)
    loss = SpatialCorrelationLoss(
        positions, {name: 0.5 for name in positions}, neighborhoods_per_step=2
    )
    images = torch.randn(6, 3, 32, 32)
    injected = run(model, loss, images, scale, True, monkeypatch)
    plain = run(model, loss, images, scale, False, monkeypatch)
    assert injected.keys() == plain.keys()
    for name in plain:
        torch.testing.assert_close(injected[name], plain[name], rtol=1e-4, atol=1e-6 * scale)


class SideBranch(nn.Module):
    """A trunk whose 'side' layer feeds only the features, not the output."""

    cortical_areas = {"main": "V1", "side": "V1"}

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.side_conv = nn.Conv2d(3, 2, 3, padding=1)

    def forward(self, x):
        main = torch.relu(self.conv(x))
        side = torch.relu(self.side_conv(x))
        return main.mean(dim=(2, 3)), {"main": main, "side": side}


def test_a_layer_used_only_by_the_loss_still_gets_its_gradient(monkeypatch):
    torch.manual_seed(0)
    model = SideBranch()
    positions = UniformLayout(n_neighborhoods=30, seed=0).build(model, 8)
    loss = SpatialCorrelationLoss(positions, {"main": 1.0, "side": 1.0})
    images = torch.randn(5, 3, 8, 8)
    injected = run(model, loss, images, 1.0, True, monkeypatch)
    plain = run(model, loss, images, 1.0, False, monkeypatch)
    assert injected["side_conv.weight"].abs().sum() > 0
    for name in plain:
        torch.testing.assert_close(injected[name], plain[name], rtol=1e-4, atol=1e-7)


def test_every_block_but_the_last_takes_the_injected_path():
    model = create_model("resnet18_spatial")
    positions = UniformLayout(n_neighborhoods=50, seed=1).build(model, 32)
    loss = SpatialCorrelationLoss(positions, {name: 0.5 for name in positions})
    _, features = model(torch.randn(4, 3, 32, 32))
    loss(features)
    assert loss.injected_layers == tuple(name for name in positions if name != "layer4.1")
    with torch.no_grad():
        _, features = model(torch.randn(4, 3, 32, 32))
        loss(features)
    assert loss.injected_layers == ()


def test_a_steps_activations_are_freed_after_backward():
    """The injection hooks must not keep the layers alive (a cycle through autograd's C++ nodes
    that gc cannot break): a run would otherwise grow by every step's activations."""
    torch.manual_seed(0)
    model = create_model("resnet18_spatial")
    positions = UniformLayout(n_neighborhoods=30, seed=1).build(model, 32)
    loss = SpatialCorrelationLoss(positions, {name: 0.5 for name in positions})
    output, features = model(torch.randn(4, 3, 32, 32))
    spatial, _ = loss(features)
    assert loss.injected_layers  # the injected path is the one under test
    alive = [weakref.ref(features[name]) for name in loss.injected_layers]
    (output.square().mean() + spatial).backward()
    del output, features, spatial
    gc.collect()
    assert [ref() for ref in alive] == [None] * len(alive)
