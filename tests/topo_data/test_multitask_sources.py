"""load_source: torchvision's own classes on tiny IDX files, scikit-learn's digits, and errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from tests.topo_data.idx_files import make_split, write_idx, write_mnist_like, write_tiny_sets
from topo_data import TopoDataError
from topo_data.multitask import EMNIST_SPLITS, SOURCE_NAMES, load_source


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return write_tiny_sets(tmp_path_factory.mktemp("idx"))


@pytest.mark.parametrize("name", ["MNIST", "FashionMNIST", "KMNIST", "QMNIST", "EMNIST:letters"])
@pytest.mark.parametrize("train", [True, False])
def test_torchvision_sets_round_trip_pixels_and_labels_exactly(tiny, name, train):
    expected = tiny.splits[name][0 if train else 1]
    images, targets = load_source(name, tiny.root, train)
    assert images.dtype == torch.uint8 and targets.dtype == torch.int64
    assert images.shape == expected.images.shape and targets.shape == expected.labels.shape
    np.testing.assert_array_equal(images.numpy(), expected.images)
    np.testing.assert_array_equal(targets.numpy(), expected.labels)


def test_qmnist_class_is_column_zero_of_its_eight_column_label_table(tiny):
    raw = tiny.root / "QMNIST" / "raw" / "qmnist-train-labels-idx2-int"
    header = np.frombuffer(raw.read_bytes()[:12], dtype=">u4")
    assert header.tolist() == [0x00000C02, 16, 8]  # int32, 2 dims: (n, 8)
    _, targets = load_source("QMNIST", tiny.root, True)
    np.testing.assert_array_equal(targets.numpy(), tiny.splits["QMNIST"][0].labels)


def test_emnist_letters_keep_their_original_classes_1_to_26(tiny):
    _, train = load_source("EMNIST:letters", tiny.root, True)
    _, val = load_source("EMNIST:letters", tiny.root, False)
    assert torch.unique(torch.cat([train, val])).tolist() == list(range(1, 27))


def test_idx_writer_uses_the_mnist_magic_numbers(tmp_path):
    images = write_idx(tmp_path / "i", np.zeros((3, 4, 5), np.uint8)).read_bytes()
    labels = write_idx(tmp_path / "l", np.zeros(3, np.uint8)).read_bytes()
    assert np.frombuffer(images[:16], ">u4").tolist() == [0x00000803, 3, 4, 5]
    assert np.frombuffer(labels[:8], ">u4").tolist() == [0x00000801, 3]
    assert len(images) == 16 + 60 and len(labels) == 8 + 3


def test_digits_are_sklearn_digits_scaled_to_0_255_with_a_fixed_80_20_split():
    bunch = load_digits()
    scaled = np.rint(bunch.images * 255 / 16).astype(np.uint8)
    train_x, train_y = load_source("Digits", None, True)
    val_x, val_y = load_source("Digits", None, False)
    assert (len(train_x), len(val_x)) == (1438, 359)  # round(0.8 * 1797)
    assert train_x.shape[1:] == (8, 8) and train_x.dtype == torch.uint8
    assert int(train_x.max()) == 255 and int(train_x.min()) == 0
    # the two splits partition the 1797 digits, each with its own label (duplicates counted)
    expected = sorted(scaled[i].tobytes() + bytes([bunch.target[i]]) for i in range(1797))
    got = [
        x.numpy().tobytes() + bytes([int(y)])
        for x, y in zip(torch.cat([train_x, val_x]), torch.cat([train_y, val_y]), strict=True)
    ]
    assert sorted(got) == expected
    again_x, again_y = load_source("Digits", None, True)
    assert torch.equal(again_x, train_x) and torch.equal(again_y, train_y)


def test_digits_flipped_mirrors_each_digit_left_right():
    for train in (True, False):
        x, y = load_source("Digits", None, train)
        fx, fy = load_source("DigitsFlipped", None, train)
        assert torch.equal(fx, x.flip(-1)) and torch.equal(fy, y)
        assert not torch.equal(fx, x)


def test_unknown_name_lists_the_known_sources():
    with pytest.raises(TopoDataError, match="unknown data set") as info:
        load_source("CIFAR10", None, True)
    for name in ("Digits", "MNIST", "QMNIST", "EMNIST:letters"):
        assert name in str(info.value) and name in SOURCE_NAMES


@pytest.mark.parametrize("name", ["EMNIST", "EMNIST:cursive"])
def test_emnist_without_a_valid_split_lists_the_splits(name):
    with pytest.raises(TopoDataError, match="EMNIST needs one of its splits") as info:
        load_source(name, "/nonexistent", True)
    for split in EMNIST_SPLITS:
        assert f"EMNIST:{split}" in str(info.value)


def test_missing_files_name_the_root_the_set_and_the_raw_files(tmp_path):
    with pytest.raises(TopoDataError) as info:
        load_source("KMNIST", tmp_path, True)
    message = str(info.value)
    assert str(tmp_path) in message and "KMNIST" in message
    assert "nothing is downloaded" in message
    for raw in ("train-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        assert raw in message
    with pytest.raises(TopoDataError) as info:
        load_source("EMNIST:letters", tmp_path, False)
    assert "emnist-letters-test-images-idx3-ubyte" in str(info.value)
    with pytest.raises(TopoDataError) as info:
        load_source("QMNIST", tmp_path, True)
    assert "qmnist-train-labels-idx2-int" in str(info.value)


def test_a_partial_set_reports_only_the_missing_file(tmp_path):
    split = make_split(4, np.arange(10), tag=1)
    raw = write_mnist_like(tmp_path, "MNIST", split, split)
    (raw / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(TopoDataError, match=r"missing \['t10k-labels-idx1-ubyte'\]"):
        load_source("MNIST", tmp_path, True)


def test_a_torchvision_set_without_root_is_a_clear_error():
    with pytest.raises(TopoDataError, match="root is null") as info:
        load_source("MNIST", None, True)
    assert info.value.field == "root"
