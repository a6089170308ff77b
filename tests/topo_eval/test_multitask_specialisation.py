"""Both directions of a split and the symmetric specialisation index, on planted networks whose
every sub-network's accuracy is known in advance."""

from __future__ import annotations

import logging
import math

import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf

from tests.topo_eval.multitask_fakes import FakeSequentialData
from topo_eval.multitask.score import FULL, split_summary
from topo_eval.multitask.specialisation import (
    split_specialisation,
    symmetric_index,
    task_specialisation,
)
from topo_eval.multitask.stages import MultiTaskRun, run_score, run_split
from topo_models.spatial import SpatialMLP

MODEL_CONFIG = {
    "_target_": "topo_models.spatial.SpatialMLP",
    "input_shape": [1, 1, 4],
    "n_tasks": 2,
    "labels": 2,
    "widths": [4, 4],
}
LABEL0_RATE = (11 / 20, 13 / 20)  # how often label 0 is right, for task 0 and task 1


def planted_network(leak: float) -> SpatialMLP:
    """4 inputs → hidden1 (4) → hidden2 (4) → output (2 labels × 2 tasks), sigmoid.

    Input feature ``2t + y`` is on for a sample of task t with label y. hidden1 neurons 0, 1
    fire for label 0, 1 of *either* task; neurons 2, 3 for label 0, 1 of task 1 only; hidden2
    copies hidden1. Task 0's logits read hidden2 neurons 0, 1 (weight 4); task 1's read
    neurons 2, 3 (weight 4) and, with ``leak`` (< 4), neurons 0, 1 — so the greedy split gives
    neurons 0, 1 to task 0 and 2, 3 to task 1 in both layers. A dropped sigmoid neuron (no
    input, no bias) sits at 0.5, and a small bias makes a head with no information answer
    label 0. Hence, split at either hidden layer: task 1's sub-network answers label 0 on
    task 0; task 0's sub-network answers label 0 on task 1 when ``leak`` = 0 (a split clean
    for both tasks), and answers task 1 right when ``leak`` > 0 (clean for task 0 only).
    """
    model = SpatialMLP(**{k: v for k, v in MODEL_CONFIG.items() if k != "_target_"}, seed=0)
    with torch.no_grad():
        first = torch.tensor(
            [[1.0, 0, 1, 0], [0, 1.0, 0, 1], [0, 0, 1.0, 0], [0, 0, 0, 1.0]]
        )  # hidden1 neuron ← input features
        model.hidden1.weight.copy_(10 * first)
        model.hidden1.bias.fill_(-5.0)
        model.hidden2.weight.copy_(10 * torch.eye(4))
        model.hidden2.bias.fill_(-5.0)
        output = torch.zeros(4, 4)  # logit label · 2 + task ← hidden2 neuron
        output[0, 0] = output[2, 1] = 4.0  # task 0, labels 0 and 1
        output[1, 2] = output[3, 3] = 4.0  # task 1, labels 0 and 1
        output[1, 0] = output[3, 1] = leak
        model.output.weight.copy_(output)
        model.output.bias.copy_(torch.tensor([0.1, 0.1, 0.0, 0.0]))
    return model.eval()


def planted_data() -> FakeSequentialData:
    """20 samples of each task; label 0 on 11 of task 0's and 13 of task 1's."""
    tasks = torch.tensor([0, 1] * 20)
    labels = torch.ones(40, dtype=torch.long)
    labels[torch.nonzero(tasks == 0)[:11, 0]] = 0
    labels[torch.nonzero(tasks == 1)[:13, 0]] = 0
    inputs = torch.nn.functional.one_hot(2 * tasks + labels, 4).float().view(40, 1, 1, 4)
    return FakeSequentialData(inputs, tasks, labels, 2, batch_size=7)


def expected_accuracies(leak: float) -> pd.DataFrame:
    """Rows full, task0's and task1's sub-network; columns task0, task1 (see planted_network)."""
    other_on_task1 = 1.0 if leak else LABEL0_RATE[1]
    return pd.DataFrame(
        [[1.0, 1.0], [1.0, other_on_task1], [LABEL0_RATE[0], 1.0]],
        index=[FULL, "task0", "task1"],
        columns=["task0", "task1"],
    )


def by_hand(accuracy: pd.DataFrame, chance: float) -> list[float]:
    """s_t = (own − other) / (full − chance), written out for two tasks."""
    own = [accuracy.loc["task0", "task0"], accuracy.loc["task1", "task1"]]
    other = [accuracy.loc["task1", "task0"], accuracy.loc["task0", "task1"]]
    full = [accuracy.loc[FULL, "task0"], accuracy.loc[FULL, "task1"]]
    return [(own[t] - other[t]) / (full[t] - chance) for t in range(2)]


@pytest.mark.parametrize("leak", [0.0, 1.0], ids=["clean for both", "clean for task 0 only"])
def test_split_specialisation_scores_both_directions_of_every_hidden_layer(leak):
    rows = split_specialisation(
        planted_network(leak),
        planted_data(),
        {"hidden1": ["hidden1"], "hidden2": ["hidden2"]},
        network="run",
    )
    expected = expected_accuracies(leak)
    values = by_hand(expected, chance=0.5)
    assert list(rows.split) == ["hidden1", "hidden1", "hidden2", "hidden2"]
    for _, split in rows.groupby("split"):
        np.testing.assert_allclose(split.full, [1.0, 1.0])
        np.testing.assert_allclose(split.own_subnetwork, [1.0, 1.0])
        np.testing.assert_allclose(
            split.other_subnetworks,
            [expected.loc["task1", "task0"], expected.loc["task0", "task1"]],
        )
        np.testing.assert_allclose(split.specialisation, values)
        np.testing.assert_allclose(split.split_index, min(values))


def test_a_split_clean_for_one_task_scores_below_one_clean_for_both():
    data = planted_data()
    splits = {"hidden2": ["hidden2"]}
    both = split_specialisation(planted_network(0.0), data, splits, "run").split_index.iloc[0]
    one = split_specialisation(planted_network(1.0), data, splits, "run").split_index.iloc[0]
    assert both == pytest.approx(2 * (1 - LABEL0_RATE[1]))  # task 1, the less clean of the two
    assert one == pytest.approx(0.0) and one < both
    # the one-sided split is as clean as the two-sided one for task 0: only the index tells
    table = expected_accuracies(1.0)
    assert by_hand(table, 0.5)[0] == by_hand(expected_accuracies(0.0), 0.5)[0]


def test_specialisation_is_the_gap_over_what_the_full_network_does_above_chance():
    """The README's situation: task 1's sub-network fails task 0, but task 0's sub-network
    does task 1 better than task 1's own — the index is task 1's negative value."""
    table = pd.DataFrame(
        [[0.97, 0.95], [0.96, 0.94], [0.33, 0.91]],
        index=[FULL, "a", "b"],
        columns=["a", "b"],
    )
    values = task_specialisation(split_summary(table), chance=0.2)
    np.testing.assert_allclose(values, [(0.96 - 0.33) / 0.77, (0.91 - 0.94) / 0.75])
    assert symmetric_index(values) == pytest.approx((0.91 - 0.94) / 0.75)
    at_chance = table.copy()
    at_chance.loc[FULL, "b"] = 0.2
    undefined = task_specialisation(split_summary(at_chance), chance=0.2)
    assert math.isnan(undefined[1]) and math.isnan(symmetric_index(undefined))


def test_score_stage_reports_both_directions_and_the_control(tmp_path, caplog):
    data = planted_data()
    saved = {"model_config": MODEL_CONFIG, "config_yaml": ""}
    run = MultiTaskRun(tmp_path / "model.pt", planted_network(1.0), data, saved)
    control = planted_network(0.0)  # stands in for a control: here, the cleaner split
    torch.save({"model": control.state_dict(), **saved}, tmp_path / "control.pt")
    cfg = OmegaConf.create(
        {
            "device": "cpu",
            "multitask": {
                "where": None,
                "split_dir": str(tmp_path / "split"),
                "n_shuffles": 5,
                "control": str(tmp_path / "control.pt"),
            },
        }
    )
    run_split(cfg, tmp_path / "split", run)
    with caplog.at_level(logging.INFO, logger="topo_eval"):
        _, metrics = run_score(cfg, tmp_path / "score", run)
    rows = pd.read_csv(tmp_path / "score" / "specialisation.csv")
    assert list(zip(rows.network, rows.split, strict=True)) == [
        ("run", "hidden2"),
        ("run", "hidden2"),
        ("run", "hidden1"),
        ("run", "hidden1"),
        ("control", "hidden2"),
        ("control", "hidden2"),
        ("control", "hidden1"),
        ("control", "hidden1"),
    ]
    one_sided = min(by_hand(expected_accuracies(1.0), 0.5))
    two_sided = min(by_hand(expected_accuracies(0.0), 0.5))
    assert metrics["specialisation_index"] == pytest.approx(one_sided)
    assert metrics["control/specialisation_index"] == pytest.approx(two_sided)
    assert metrics["specialisation_index/hidden1"] == pytest.approx(one_sided)
    assert metrics["accuracy/subnetwork0/task1"] == 1.0  # task 0's sub-network does task 1
    assert metrics["accuracy/subnetwork1/task0"] == pytest.approx(LABEL0_RATE[0])
    summary = pd.read_csv(tmp_path / "score" / "score_summary.csv")
    np.testing.assert_allclose(summary.specialisation, by_hand(expected_accuracies(1.0), 0.5))
    report = caplog.text
    assert "split at hidden2" in report and "control" in report and "silhouette" in report
