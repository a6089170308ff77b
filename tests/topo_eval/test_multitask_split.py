"""Greedy and probabilistic task assignment on hand-built networks with known answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from topo_eval.multitask import TaskAssignment, apply_masks, greedy_assignment, keep_masks
from topo_eval.multitask.split import split_network
from topo_models import TopoError
from topo_models.spatial import SpatialMLP


def hand_built() -> SpatialMLP:
    """4 inputs → hidden1 (4) → hidden2 (4) → output (2 labels × 2 tasks).

    Output o belongs to task o % 2: rows 0, 2 (task 0) read hidden2 neurons 0, 1; rows 1, 3
    (task 1) read hidden2 neurons 2, 3. hidden2 neurons 0, 1 read hidden1 neurons 3, 2 and
    hidden2 neurons 2, 3 read hidden1 neurons 0, 1 — so hidden1 is assigned [1, 1, 0, 0].
    """
    model = SpatialMLP(input_shape=(1, 1, 4), n_tasks=2, labels=2, widths=(4, 4), seed=0)
    with torch.no_grad():
        model.output.weight.copy_(
            torch.tensor(
                [
                    [2.0, -1.5, 0.1, 0.0],
                    [0.0, 0.2, 1.0, -3.0],
                    [1.0, 1.0, 0.0, 0.3],
                    [-0.1, 0.0, 2.0, 2.0],
                ]
            )
        )
        model.hidden2.weight.copy_(
            torch.tensor(
                [
                    [0.0, 0.1, 0.2, 3.0],
                    [0.1, 0.0, -2.5, 0.3],
                    [1.0, 0.2, 0.0, 0.0],
                    [0.0, -1.0, 0.1, 0.0],
                ]
            )
        )
        model.hidden1.weight.normal_()
        for layer in (model.hidden1, model.hidden2, model.output):
            layer.bias.fill_(0.5)
    return model


def test_greedy_assignment_follows_the_strongest_weights_backwards():
    assignment = greedy_assignment(hand_built(), n_tasks=2)
    assert list(assignment.tasks) == ["hidden1", "hidden2", "output"]
    np.testing.assert_array_equal(assignment.tasks["output"], [0, 1, 0, 1])
    np.testing.assert_array_equal(assignment.tasks["hidden2"], [0, 0, 1, 1])
    np.testing.assert_array_equal(assignment.tasks["hidden1"], [1, 1, 0, 0])
    # s_t(k) = Σ_{j of task t} |W[j, k]|: hidden2 neuron 1 from task 0 rows 0, 2: 1.5 + 1.0
    np.testing.assert_allclose(assignment.scores["hidden2"][:, 1], [2.5, 0.2], atol=1e-6)
    np.testing.assert_allclose(assignment.scores["hidden1"][:, 2], [2.7, 0.1], atol=1e-6)


def test_greedy_split_zeroes_the_incoming_rows_and_biases_of_other_tasks():
    model = hand_built()
    networks, _, masks = split_network(model, 2, where="all")
    assert list(split_network(model, 2)[2][0]) == ["hidden2"]  # default: the last hidden layer
    first = networks[0]
    np.testing.assert_array_equal(masks[0]["hidden1"], [False, False, True, True])
    assert torch.all(first.hidden1.weight[:2] == 0) and torch.all(first.hidden1.bias[:2] == 0)
    torch.testing.assert_close(first.hidden1.weight[2:], model.hidden1.weight[2:])
    assert torch.all(first.hidden2.weight[2:] == 0) and torch.all(first.output.weight[[1, 3]] == 0)
    torch.testing.assert_close(first.output.weight[[0, 2]], model.output.weight[[0, 2]])
    assert torch.all(model.hidden1.weight[:2] != 0)  # the original is untouched
    biased, _, _ = split_network(model, 2, where="all", zero_bias=False)
    assert torch.all(biased[1].hidden1.bias == 0.5) and torch.all(biased[1].hidden1.weight[2:] == 0)


def test_split_masks_only_the_layers_in_where_and_refuses_unknown_names():
    model = hand_built()
    networks, _, masks = split_network(model, 2, where=["hidden2"])
    assert list(masks[0]) == ["hidden2"]
    torch.testing.assert_close(networks[1].hidden1.weight, model.hidden1.weight)
    assert torch.all(networks[1].hidden2.weight[:2] == 0)
    with pytest.raises(TopoError, match="or be 'all'"):
        split_network(model, 2, where="hidden1")
    with pytest.raises(TopoError, match="not a layer of the model"):
        split_network(model, 2, where=["hidden7"])
    non_spatial = next(n for n, m in model.named_modules() if n and not hasattr(m, "positions"))
    with pytest.raises(TopoError, match="not a spatial layer"):
        split_network(model, 2, where=[non_spatial])


def test_probability_masks_keep_each_neuron_with_its_score_ratio():
    scores = np.stack([np.full(20000, 4.0), np.full(20000, 1.0)])
    scores[:, :10] = [[0.0], [2.0]]  # task 0 has no weight onto the first ten
    assignment = TaskAssignment(tasks={"h": scores.argmax(0)}, scores={"h": scores})
    masks = keep_masks(assignment, 2, ["h"], method="probability", seed=3)
    assert masks[0]["h"][10:].all() and not masks[0]["h"][:10].any()
    assert masks[1]["h"][:10].all()
    assert abs(masks[1]["h"][10:].mean() - 0.25) < 0.015
    again = keep_masks(assignment, 2, ["h"], method="probability", seed=3)
    np.testing.assert_array_equal(again[1]["h"], masks[1]["h"])  # seeded
    with pytest.raises(TopoError, match="unknown split method"):
        keep_masks(assignment, 2, ["h"], method="rescale")


def test_conv_weights_are_reduced_over_the_kernel():
    from topo_models.spatial import SpatialCNN

    model = SpatialCNN(input_shape=(1, 8, 8), n_tasks=2, labels=1, channels=(3, 2), seed=0)
    with torch.no_grad():
        model.output.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))  # channel c → task c
        weight = torch.zeros_like(model.conv2.weight)  # (2, 3, 3, 3)
        weight[0, 2] = 0.5  # Σ|w| over the kernel: 4.5 from channel 2 to task 0
        weight[1, 0, 1, 1] = -2.0
        weight[1, 1] = 0.1  # 0.9 from channel 1 to task 1
        model.conv2.weight.copy_(weight)
    assignment = greedy_assignment(model, 2)
    np.testing.assert_array_equal(assignment.tasks["conv2"], [0, 1])
    np.testing.assert_allclose(assignment.scores["conv1"], [[0, 0, 4.5], [2.0, 0.9, 0]], atol=1e-6)
    masked = apply_masks(model, {"conv1": np.array([True, False, True])})
    assert torch.all(masked.conv1.weight[1] == 0) and torch.any(masked.conv1.weight[0] != 0)
