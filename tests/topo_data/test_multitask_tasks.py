"""Label modulo K: data sets → tasks, the task layout of every sample's targets, and errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.topo_data.idx_files import Split, make_split, write_mnist_like, write_tiny_sets
from topo_data import MultiTaskData, TopoDataError
from topo_data.multitask import IGNORE_INDEX, TaskInfo, load_source


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return write_tiny_sets(tmp_path_factory.mktemp("idx"))


def all_targets(data: MultiTaskData, split: str) -> torch.Tensor:
    return torch.cat([batch.targets for batch in data.loader(split)])


def test_digits_with_labels_5_are_two_tasks_digits_0_4_and_5_9():
    data = MultiTaskData(datasets=["Digits"], labels=5)
    assert data.tasks == [
        TaskInfo(0, "Digits[0:5]", "Digits", (0, 1, 2, 3, 4)),
        TaskInfo(1, "Digits[5:10]", "Digits", (5, 6, 7, 8, 9)),
    ]
    assert (data.n_tasks, data.num_classes, data.labels) == (2, 5, 5)
    for split, train in (("train", True), ("val", False)):
        _, classes = load_source("Digits", None, train)
        targets = all_targets(data, split)
        rows = torch.arange(len(classes))
        assert torch.equal(targets[rows, classes // 5], classes % 5)
        assert torch.equal(targets[rows, 1 - classes // 5], torch.full_like(classes, -100))
        assert torch.equal(data.sample_tasks(split), classes // 5)


def test_emnist_letters_with_labels_10_are_three_tasks_of_10_10_and_6_classes(tiny):
    data = MultiTaskData(datasets=["EMNIST:letters"], labels=10, root=str(tiny.root))
    assert [t.name for t in data.tasks] == [
        "EMNIST:letters[0:10]",
        "EMNIST:letters[10:20]",
        "EMNIST:letters[20:26]",
    ]
    assert [t.classes for t in data.tasks] == [
        tuple(range(1, 11)),
        tuple(range(11, 21)),
        tuple(range(21, 27)),
    ]
    for split, truth in zip(("train", "val"), tiny.splits["EMNIST:letters"], strict=True):
        letters = torch.from_numpy(truth.labels)  # 1..26
        expected = torch.full((len(letters), 3), IGNORE_INDEX)
        expected[torch.arange(len(letters)), (letters - 1) // 10] = (letters - 1) % 10
        assert torch.equal(all_targets(data, split), expected)
        assert torch.equal(data.sample_tasks(split), (letters - 1) // 10)
    # every label of the last task is below its 6 classes
    last = all_targets(data, "train")[:, 2]
    assert sorted(torch.unique(last[last != IGNORE_INDEX]).tolist()) == list(range(6))


def test_two_ten_class_sets_with_labels_10_are_one_task_each_in_the_given_order():
    data = MultiTaskData(datasets=["DigitsFlipped", "Digits"], labels=10)
    assert [(t.index, t.name, t.source) for t in data.tasks] == [
        (0, "DigitsFlipped", "DigitsFlipped"),
        (1, "Digits", "Digits"),
    ]
    split_data = MultiTaskData(datasets=["Digits", "DigitsFlipped"], labels=5)
    assert [t.name for t in split_data.tasks] == [
        "Digits[0:5]",
        "Digits[5:10]",
        "DigitsFlipped[0:5]",
        "DigitsFlipped[5:10]",
    ]
    _, val_classes = load_source("Digits", None, False)
    n = len(val_classes)
    tasks = split_data.sample_tasks("val")
    assert torch.equal(tasks[:n], val_classes // 5)  # Digits first, then its mirror
    assert torch.equal(tasks[n:], 2 + val_classes // 5)


def test_classes_are_the_union_of_both_splits_sorted_and_renumbered(tmp_path):
    # sparse class values 3, 5, 7, 9, 11; 11 occurs only in the validation split
    train = Split(make_split(8, [0], 1).images, np.array([3, 5, 7, 9] * 2, dtype=np.int64))
    val = Split(make_split(5, [0], 2).images, np.array([11, 3, 5, 7, 9], dtype=np.int64))
    write_mnist_like(tmp_path, "MNIST", train, val)
    data = MultiTaskData(datasets=["MNIST"], labels=2, root=str(tmp_path))
    assert [t.classes for t in data.tasks] == [(3, 5), (7, 9), (11,)]
    assert [t.name for t in data.tasks] == ["MNIST[0:2]", "MNIST[2:4]", "MNIST[4:5]"]
    expected = torch.tensor([[0, -100, -100], [-100, -100, 0], [1, -100, -100]])
    assert torch.equal(all_targets(data, "val")[[1, 0, 2]], expected)


def test_labels_above_a_class_count_names_the_set_its_count_and_labels(tiny):
    with pytest.raises(TopoDataError) as info:
        MultiTaskData(datasets=["EMNIST:letters", "MNIST"], labels=12, root=str(tiny.root))
    message = str(info.value)
    assert "MNIST has 10 classes" in message and "labels=12" in message
    assert info.value.field == "labels" and info.value.found == 12


def test_different_image_shapes_name_both_sets_and_both_shapes(tmp_path):
    split = make_split(10, np.arange(10), tag=1, size=28)
    write_mnist_like(tmp_path, "MNIST", split, split)
    with pytest.raises(TopoDataError) as info:
        MultiTaskData(datasets=["Digits", "MNIST"], labels=10, root=str(tmp_path))
    message = str(info.value)
    assert "Digits" in message and "(8, 8)" in message
    assert "MNIST" in message and "(28, 28)" in message


def test_missing_files_of_a_listed_set_name_the_root(tmp_path):
    with pytest.raises(TopoDataError, match="FashionMNIST") as info:
        MultiTaskData(datasets=["FashionMNIST"], labels=10, root=str(tmp_path / "data"))
    assert str(tmp_path / "data") in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"datasets": "Digits"}, "datasets"),
        ({"datasets": []}, "datasets"),
        ({"datasets": ["Digits", "Digits"]}, "datasets"),
        ({"labels": 1}, "labels"),
        ({"input_mode": "stacked"}, "input_mode"),
        ({"order": "blocked"}, "order"),
        ({"input_mode": "mix", "order": "task"}, "order"),
        ({"batch_size": 0}, "batch_size"),
        ({"train_fraction": 0.0}, "train_fraction"),
        ({"rank": 2, "world_size": 2}, "rank"),
    ],
)
def test_bad_constructor_arguments_fail_with_the_field_named(kwargs, field):
    with pytest.raises(TopoDataError) as info:
        MultiTaskData(**kwargs)
    assert info.value.field == field
