"""Per-task activity statistics against sample-by-sample forward passes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.topo_eval.multitask_fakes import FakeSequentialData
from topo_eval.multitask import ActivityRecord, record_activity, task_strength
from topo_models import TopoError
from topo_models.spatial import SpatialCNN, SpatialMLP


def fake_data(n: int = 23, identity: bool = True) -> FakeSequentialData:
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(n, 1, 1, 6, generator=generator)
    tasks = torch.randint(0, 3, (n,), generator=generator)
    labels = torch.randint(0, 2, (n,), generator=generator)
    return FakeSequentialData(inputs, tasks, labels, n_tasks=3, identity=identity)


def one_by_one(model, data, name):
    rows = []
    with torch.no_grad():
        for x in data.inputs:
            rows.append(model(x[None])[1][name][0].reshape(-1).double().numpy())
    return np.stack(rows)


@pytest.mark.parametrize("reduction", ["mean", "variance"])
def test_record_matches_statistics_of_single_sample_passes(reduction):
    model = SpatialMLP(input_shape=(1, 1, 6), n_tasks=3, labels=2, widths=(5, 4), seed=1)
    data = fake_data()
    record = record_activity(model, data, reduction=reduction)
    assert list(record.layers) == ["hidden1", "hidden2", "output"]
    np.testing.assert_array_equal(record.counts, np.bincount(data.task_of.numpy(), minlength=3))
    for name in record.layers:
        x = one_by_one(model, data, name)
        for t in range(3):
            rows = x[data.task_of.numpy() == t]
            expected = np.abs(rows).mean(0) if reduction == "mean" else rows.var(0)
            np.testing.assert_allclose(record.layers[name][t], expected, rtol=1e-5, atol=1e-7)


def test_conv_channels_pool_every_location():
    model = SpatialCNN(input_shape=(1, 6, 6), n_tasks=2, labels=2, channels=(3,), seed=0)
    generator = torch.Generator().manual_seed(1)
    data = FakeSequentialData(
        torch.randn(9, 1, 6, 6, generator=generator),
        torch.tensor([0, 1] * 4 + [0]),
        torch.zeros(9),
        n_tasks=2,
        batch_size=4,
    )
    record = record_activity(model, data, reduction="mean")
    with torch.no_grad():
        conv = torch.stack([model(x[None])[1]["conv1"][0] for x in data.inputs])  # (9, 3, h, w)
    expected = conv[data.task_of == 1].abs().mean(dim=(0, 2, 3)).double().numpy()
    np.testing.assert_allclose(record.layers["conv1"][1], expected, rtol=1e-6)


def test_record_round_trips_through_its_file(tmp_path):
    model = SpatialMLP(input_shape=(1, 1, 6), n_tasks=3, labels=2, widths=(5,), seed=1)
    record = record_activity(model, fake_data(), reduction="variance")
    loaded = ActivityRecord.load(record.save(tmp_path).parent)
    assert loaded.reduction == "variance" and loaded.task_names == ("task0", "task1", "task2")
    for name, values in record.layers.items():
        np.testing.assert_array_equal(loaded.layers[name], values)


def test_record_refuses_input_modes_without_a_task_per_sample_and_bad_reductions():
    model = SpatialMLP(input_shape=(1, 1, 6), n_tasks=3, labels=2, widths=(5,), seed=1)
    with pytest.raises(TopoError, match="one task per sample"):
        record_activity(model, fake_data(identity=False))
    with pytest.raises(TopoError, match="unknown reduction"):
        record_activity(model, fake_data(), reduction="median")


def test_task_strength_is_the_margin_over_the_best_other_task():
    activity = np.array([[1.0, 0.2, 0.5, 0.3], [0.4, 0.9, 0.5, 0.1], [0.0, 0.1, 0.2, 0.3]])
    expected = np.array([[0.6, 0.0, 0.0, 0.0], [0.0, 0.7, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    np.testing.assert_allclose(task_strength(activity), expected)
