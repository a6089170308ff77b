"""Every registered model: forward, backward, features keyed by layer name."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision.models import resnet18

from topo_models import TopoError, create_model, list_models
from topo_models.losses import ProximityCost, TransportCost
from topo_models.trunks import BLOCK_NAMES

# Neural predictive models need their sessions' neurons (counts, cortical coordinates) and
# return rates; their features come with return_features=True.
PREDICTIVE_ARGS = {
    "n_neurons": {"a": 5},
    "cortex_coordinates": {"a": np.random.default_rng(0).normal(size=(5, 2))},
}


@pytest.mark.parametrize("name", list_models())
def test_every_registered_model_returns_output_and_features(name):
    if name.startswith("sensorium"):
        model = create_model(name, **PREDICTIVE_ARGS)
        output, features = model(torch.randn(2, 1, 36, 64), data_key="a", return_features=True)
        assert output.shape == (2, 5) and (output > 0).all()  # ELU + 1 rates
    elif name.startswith("spatial"):
        model = create_model(name)
        output, features = model(torch.randn(2, 1, 28, 28))
        assert output.shape == (2, 20)  # 10 labels x 2 tasks
        assert list(features) == list(model.spatial_layers())
        # Positions get their gradients from the spatial costs only.
        output = output + ProximityCost()(model)[0] + TransportCost()(model)[0]
    else:
        model = create_model(name)
        output, features = model(torch.randn(2, 3, 64, 64))
    assert output.shape[0] == 2 and isinstance(features, dict) and features
    output.sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_resnet18_spatial_features_are_the_eight_block_outputs():
    model = create_model("resnet18_spatial", head="classifier", num_classes=7).eval()
    reference = resnet18(weights=None).eval()
    reference.load_state_dict(
        {**model.state_dict(), "fc.weight": torch.zeros(1000, 512), "fc.bias": torch.zeros(1000)}
    )
    x = torch.randn(2, 3, 64, 64)
    captured = {}
    for name in BLOCK_NAMES:
        stage, block = name.split(".")
        getattr(reference, stage)[int(block)].register_forward_hook(
            lambda _m, _i, out, name=name: captured.__setitem__(name, out)
        )
    logits, features = model(x)
    reference(x)
    assert list(features) == list(BLOCK_NAMES)
    for name in BLOCK_NAMES:
        torch.testing.assert_close(features[name], captured[name])
    assert logits.shape == (2, 7)
    assert features["layer2.0"].shape == (2, 128, 8, 8)


def test_heads_have_the_published_shapes():
    projector = create_model("resnet18_spatial", head="projector").fc
    assert [m.__class__.__name__ for m in projector] == ["Linear", "ReLU", "Linear"]
    assert projector[0].in_features == 512 and projector[2].out_features == 128
    output, _ = create_model("resnet18_spatial").eval()(torch.randn(1, 3, 32, 32))
    assert output.shape == (1, 512)


def test_bad_model_arguments_are_reported():
    with pytest.raises(TopoError, match="unknown model"):
        create_model("resnet19")
    with pytest.raises(TopoError, match="num_classes"):
        create_model("resnet18_spatial", head="classifier")
    with pytest.raises(TypeError):
        create_model("resnet18_spatial", hed="classifier")
