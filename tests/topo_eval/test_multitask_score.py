"""The tasks × networks accuracy table on planted models, and the separation score."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from tests.topo_eval.multitask_fakes import FakeSequentialData
from topo_eval.multitask import cluster_separation, score_networks, split_summary


class Planted(nn.Module):
    """Reads the answer from its input: per task, logit of label (input value) or label 0.

    ``knows[t]``: task t's head answers right; otherwise it always says label 0.
    """

    def __init__(self, knows: list[bool], labels: int) -> None:
        super().__init__()
        self.knows, self.labels = knows, labels
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        truth = x[:, 0, 0, 0].long()  # (B,)
        logits = torch.zeros(x.shape[0], self.labels, len(self.knows))
        for t, knows in enumerate(self.knows):
            answer = truth if knows else torch.zeros_like(truth)
            logits[torch.arange(x.shape[0]), answer, t] = 1.0
        return logits.reshape(x.shape[0], -1), {}


def planted_data(labels: int = 7) -> FakeSequentialData:
    generator = torch.Generator().manual_seed(0)
    truth = torch.randint(0, labels, (40,), generator=generator)
    tasks = torch.arange(40) % 2
    return FakeSequentialData(truth.float().view(40, 1, 1, 1), tasks, truth, 2, batch_size=6)


def test_score_table_is_exact_for_any_number_of_labels():
    data = planted_data(labels=7)
    table = score_networks(
        {
            "full": Planted([True, True], 7),
            "task0": Planted([True, False], 7),
            "task1": Planted([False, True], 7),
        },
        data,
    )
    zero_rate = [float((data.label_of[data.task_of == t] == 0).float().mean()) for t in (0, 1)]
    expected = pd.DataFrame(
        [[1.0, 1.0], [1.0, zero_rate[1]], [zero_rate[0], 1.0]],
        index=pd.Index(["full", "task0", "task1"], name="network"),
        columns=["task0", "task1"],
    )
    pd.testing.assert_frame_equal(table, expected)
    summary = split_summary(table)
    assert list(summary.own_subnetwork) == [1.0, 1.0] and list(summary.accuracy_drop) == [0.0, 0.0]
    np.testing.assert_allclose(summary.other_subnetworks, zero_rate)


def test_silhouette_of_separated_clusters_beats_its_shuffled_control():
    generator = np.random.default_rng(0)
    positions = np.concatenate(
        [generator.normal(0, 0.3, (30, 2)), generator.normal(4, 0.3, (30, 2))]
    )
    labels = np.repeat([0, 1], 30)
    row = cluster_separation(positions, labels, n_shuffles=100, seed=0)
    assert row["silhouette"] > 0.8 and abs(row["shuffled_mean"]) < 0.05
    assert row["p_value"] == pytest.approx(1 / 101) and row["within_between_ratio"] < 0.2
    mixed = cluster_separation(positions, generator.permutation(labels), n_shuffles=100, seed=0)
    assert mixed["p_value"] > 0.01


def test_silhouette_equals_its_definition_on_four_points():
    positions = np.array([[0.0, 0.0], [1.0, 0.0], [5.0, 0.0], [7.0, 0.0]])
    labels = np.array([0, 0, 1, 1])
    a = np.array([1.0, 1.0, 2.0, 2.0])  # mean distance to the own cluster's others
    b = np.array([6.0, 5.0, 4.5, 6.5])  # mean distance to the other cluster
    expected = float(np.mean((b - a) / np.maximum(a, b)))
    assert cluster_separation(positions, labels, n_shuffles=0)["silhouette"] == pytest.approx(
        expected
    )


def test_separation_is_undefined_with_a_single_task():
    row = cluster_separation(np.zeros((5, 2)), np.zeros(5, dtype=int), n_shuffles=10)
    assert row["tasks_present"] == 1 and math.isnan(row["silhouette"])
