"""Spatial networks and their multi-task head (layout, losses, per-task counts)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import topo_models.spatial
from topo_models import TopoError, create_model
from topo_models.spatial import (
    IGNORE_INDEX,
    SpatialCNN,
    SpatialMLP,
    multitask_cross_entropy,
    task_correct_counts,
    task_logits,
)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def test_spatial_mlp_features_are_each_layers_activation_and_the_raw_logits():
    model = SpatialMLP(input_shape=(1, 4, 5), n_tasks=3, labels=2, widths=(6, 7)).double()
    x = torch.randn(8, 1, 4, 5, dtype=torch.float64)
    logits, features = model(x)
    assert list(features) == ["hidden1", "hidden2", "output"]
    h = x.flatten(1).numpy()
    for name in ("hidden1", "hidden2"):
        layer = getattr(model, name)
        h = _sigmoid(h @ layer.weight.detach().numpy().T + layer.bias.detach().numpy())
        np.testing.assert_allclose(features[name].detach().numpy(), h, rtol=1e-12)
    out = h @ model.output.weight.detach().numpy().T + model.output.bias.detach().numpy()
    np.testing.assert_allclose(logits.detach().numpy(), out, rtol=1e-12)
    assert features["output"] is logits and logits.shape == (8, 6)


def test_spatial_layers_are_in_network_order_with_their_predecessors():
    mlp = SpatialMLP()
    assert list(mlp.spatial_layers()) == ["hidden1", "hidden2", "hidden3", "hidden4", "output"]
    assert [mlp.predecessor(n) for n in mlp.spatial_layers()] == [
        None,
        "hidden1",
        "hidden2",
        "hidden3",
        "hidden4",
    ]
    assert [mlp.spatial_layers()[n].positions.shape[0] for n in mlp.spatial_layers()] == [
        128,
        128,
        128,
        256,
        20,
    ]
    cnn = SpatialCNN()
    assert list(cnn.spatial_layers()) == ["conv1", "conv2", "output"]
    assert cnn.predecessor("output") == "conv2" and cnn.predecessor("conv1") is None
    assert cnn.output.weight.shape == (20, 32)
    with pytest.raises(TopoError, match="not a spatial layer"):
        mlp.predecessor("act1")


def test_activations_are_named_modules_built_from_torch_nn_class_names():
    modules = dict(SpatialMLP(widths=(3, 4), activation="Tanh").named_modules())
    assert type(modules["act1"]).__name__ == "Tanh" and type(modules["act2"]).__name__ == "Tanh"
    for bad in ("relu", "NoSuchThing", "Linear"):
        with pytest.raises(TopoError, match="ReLU, Sigmoid"):
            SpatialMLP(activation=bad)


def test_positions_come_from_one_generator_seeded_with_seed_in_network_order():
    torch.manual_seed(1)
    a = SpatialMLP(widths=(5, 3), labels=2, seed=7)
    torch.manual_seed(2)  # the global RNG (weights) must not change the positions
    b = SpatialMLP(widths=(5, 3), labels=2, seed=7)
    c = SpatialMLP(widths=(5, 3), labels=2, seed=8)
    generator = torch.Generator().manual_seed(7)
    for name, rows in (("hidden1", 5), ("hidden2", 3), ("output", 4)):
        expected = torch.randn(rows, 2, generator=generator)
        assert torch.equal(getattr(a, name).positions, expected)
        assert torch.equal(getattr(b, name).positions, expected)
        assert not torch.equal(getattr(c, name).positions, expected)
    assert not torch.equal(a.hidden1.weight, b.hidden1.weight)


def test_logit_index_is_label_times_tasks_plus_task():
    logits = torch.arange(2 * 5 * 3, dtype=torch.float32).view(2, 15)
    heads = task_logits(logits, n_tasks=3)
    expected = logits.numpy().reshape(2, 5, 3)  # row-major over (label, task)
    np.testing.assert_array_equal(heads.numpy(), expected)
    assert heads[1, 4, 2].item() == logits[1, 4 * 3 + 2].item()
    with pytest.raises(TopoError, match="multiple of 4"):
        task_logits(logits, n_tasks=4)


def _numpy_ce(logits: np.ndarray, targets: np.ndarray, smoothing: float = 0.0) -> float:
    """Mean CE over labelled (sample, task) entries, written out with loops."""
    batch, tasks = targets.shape
    labels = logits.shape[1] // tasks
    losses = []
    for b in range(batch):
        for t in range(tasks):
            if targets[b, t] == IGNORE_INDEX:
                continue
            z = np.array([logits[b, k * tasks + t] for k in range(labels)])
            log_p = z - z.max() - np.log(np.exp(z - z.max()).sum())
            nll = -log_p[targets[b, t]]
            losses.append((1 - smoothing) * nll - smoothing * log_p.mean())
    return float(np.mean(losses)) if losses else 0.0


def test_multitask_cross_entropy_matches_the_sequential_loss():
    # Sequential input: each sample belongs to one task; only that task's head is trained.
    rng = np.random.default_rng(0)
    logits = torch.tensor(rng.normal(size=(6, 4 * 3)), dtype=torch.float64)
    tasks, classes = rng.integers(0, 3, 6), rng.integers(0, 4, 6)
    targets = torch.full((6, 3), IGNORE_INDEX)
    targets[torch.arange(6), torch.tensor(tasks)] = torch.tensor(classes)
    loss = multitask_cross_entropy(logits, targets)
    assert loss.item() == pytest.approx(_numpy_ce(logits.numpy(), targets.numpy()), rel=1e-12)
    # The original: gather each sample's task column of the (B, labels, T) view, then CE.
    view = logits.view(6, 4, 3)[torch.arange(6), :, torch.tensor(tasks)]
    assert loss.item() == pytest.approx(F.cross_entropy(view, torch.tensor(classes)).item())


def test_multitask_cross_entropy_matches_the_concatenate_loss_and_smoothing():
    rng = np.random.default_rng(1)
    logits = torch.tensor(rng.normal(size=(5, 3 * 2)), dtype=torch.float64)
    targets = torch.tensor(rng.integers(0, 3, (5, 2)))
    assert multitask_cross_entropy(logits, targets).item() == pytest.approx(
        _numpy_ce(logits.numpy(), targets.numpy()), rel=1e-12
    )
    targets[0, 1] = targets[3, 0] = IGNORE_INDEX
    smoothed = multitask_cross_entropy(logits, targets, label_smoothing=0.2)
    assert smoothed.item() == pytest.approx(
        _numpy_ce(logits.numpy(), targets.numpy(), 0.2), rel=1e-12
    )
    nothing = torch.full((5, 2), IGNORE_INDEX)
    assert multitask_cross_entropy(logits, nothing).item() == 0.0


def test_task_correct_counts_are_exact_for_any_number_of_labels():
    rng = np.random.default_rng(2)
    labels, tasks, batch = 3, 4, 50
    logits = torch.tensor(rng.normal(size=(batch, labels * tasks)))
    targets = torch.tensor(rng.integers(0, labels, (batch, tasks)))
    targets[rng.random((batch, tasks)) < 0.3] = IGNORE_INDEX
    correct, counted = task_correct_counts(logits, targets)
    predictions = logits.numpy().reshape(batch, labels, tasks).argmax(axis=1)
    labelled = targets.numpy() != IGNORE_INDEX
    np.testing.assert_array_equal(counted.numpy(), labelled.sum(axis=0))
    np.testing.assert_array_equal(
        correct.numpy(), ((predictions == targets.numpy()) & labelled).sum(axis=0)
    )
    assert correct.dtype == counted.dtype == torch.int64


def test_spatial_cnn_convolves_pools_and_skips_pools_at_one_pixel():
    model = SpatialCNN(input_shape=(2, 2, 2), channels=(3, 4), labels=5, n_tasks=1).double()
    x = torch.randn(6, 2, 2, 2, dtype=torch.float64)
    logits, features = model(x)
    modules = dict(model.named_modules())
    assert "pool1" in modules and "pool2" not in modules
    conv1 = F.relu(F.conv2d(x, model.conv1.weight, model.conv1.bias, padding="same"))
    torch.testing.assert_close(features["conv1"], conv1)
    pooled = conv1.amax(dim=(2, 3), keepdim=True)  # 2×2 map → one pixel
    conv2 = F.relu(F.conv2d(pooled, model.conv2.weight, model.conv2.bias, padding="same"))
    torch.testing.assert_close(features["conv2"], conv2)
    expected = conv2.flatten(1) @ model.output.weight.T + model.output.bias
    torch.testing.assert_close(logits, expected)
    assert list(features) == ["conv1", "conv2", "output"] and logits.shape == (6, 5)


def test_networks_are_registered_and_reject_other_input_shapes():
    assert isinstance(create_model("spatial_mlp"), topo_models.spatial.SpatialMLP)
    cnn = create_model("spatial_cnn", channels=(4,), n_tasks=3, labels=2)
    assert isinstance(cnn, SpatialCNN) and (cnn.n_tasks, cnn.labels) == (3, 2)
    assert cnn.input_shape == (1, 28, 28)
    with pytest.raises(TopoError, match=r"expected: \(batch, 1, 28, 28\)"):
        create_model("spatial_mlp")(torch.randn(2, 3, 28, 28))
    with pytest.raises(TopoError, match="widths"):
        SpatialMLP(widths=())
    with pytest.raises(TopoError, match="input_shape"):
        SpatialCNN(input_shape=(28, 28))
